"""The BROAD benchmark (jaxcv/ood/broad.py) as an evaluator: every shift split, detector and
score ensemble for the weights the loop gives it, as an evaluation-only run of a trained
classifier (configs/broad/evaluate.py).

Config keys (`config.evals.<name>`, type 'broad'): the keyword arguments of
`broad.run_benchmark` (`BENCHMARK_KEYS`, comma-separated strings for the lists). The ID data is
config.data's. Yields broad.flat_metrics ('id_accuracy', 'auroc/<method>/<split | type/<t> |
overall | worst_type | sanity>', 'attack_accuracy/<split>', 'pgd_white_uint8/...'); artefacts
under `<workdir>/<name>/`: broad_results.json and broad_results.md.
"""

from __future__ import annotations

import inspect
from typing import Iterator

import jax

from jaxcv import inference
from jaxcv.errors import ConfigError
from jaxcv.evaluators.base import register
from jaxcv.ood import broad

BENCHMARK_KEYS = tuple(p for p in inspect.signature(broad.run_benchmark).parameters
                       if p not in ('classifier', 'out_dir'))


@register('broad')
class BroadEvaluator:

  def __init__(self, eval_config, config, task, mesh, artefacts=None):
    del mesh  # The feature pass and the attacks run on the default device.
    settings = {k: v for k, v in eval_config.to_dict().items() if k != 'type'}
    unknown = sorted(set(settings) - set(BENCHMARK_KEYS))
    if unknown:
      raise ConfigError(f'unknown broad evaluator settings {unknown}; known: '
                        f'{", ".join(BENCHMARK_KEYS)}')
    self.settings = {k: tuple(v) if isinstance(v, list) else v for k, v in settings.items()}
    self.task, self.config, self.artefacts = task, config, artefacts

  def run(self, variables) -> Iterator[tuple[str, float]]:
    model, plain = self.task.export_classifier(variables)
    run_name = (self.config.get('init_checkpoint') or '').rstrip('/').split('/')[-1]
    classifier = inference.Classifier(model, jax.device_get(plain), config=self.config,
                                      name=run_name or self.config.model.name)
    results = broad.run_benchmark(classifier, **self.settings)
    if self.artefacts is not None:
      self.artefacts.json(broad.RESULTS_FILE, results)
      self.artefacts.text('broad_results.md', broad.results_markdown(results))
    yield from ((k, float(v)) for k, v in broad.flat_metrics(results).items())
