"""The CADet detection benchmark (jaxcv/cadet/benchmark.py) as an evaluator: the weights the loop
gives it are a contrastive encoder (the task's 'embedding' predict function, e.g. a SimCLR run
loaded by an evaluation-only config, configs/cadet/evaluate.py).

Config keys (`config.evals.<name>`, type 'cadet'): `classifier_run` (the supervised run the
adversarial images are crafted on; empty: no adversarial splits), `predict` ('embedding') and
the keyword arguments of `benchmark.run_detection` (`BENCHMARK_KEYS`; comma-separated strings
for lists). The ID data is config.data's. Yields benchmark.flat_metrics; artefacts under
`<workdir>/<name>/`: cadet_results.json and cadet_results.md.
"""

from __future__ import annotations

import inspect
from typing import Iterator

from jaxcv.cadet import benchmark
from jaxcv.errors import ConfigError
from jaxcv.evaluators.base import register

BENCHMARK_KEYS = tuple(p for p in inspect.signature(benchmark.run_detection).parameters
                       if p not in ('embed', 'variables', 'data_name', 'classifier', 'out_dir',
                                    'data_dir', 'image_size', 'encoder_name'))


@register('cadet')
class CADetEvaluator:

  def __init__(self, eval_config, config, task, mesh, artefacts=None):
    del mesh  # Views and attacks run on the default device, a batch at a time.
    settings = {k: v for k, v in eval_config.to_dict().items() if k != 'type'}
    self.classifier_run = settings.pop('classifier_run', '')
    predict = settings.pop('predict', 'embedding')
    unknown = sorted(set(settings) - set(BENCHMARK_KEYS))
    if unknown:
      raise ConfigError(f'unknown cadet evaluator settings {unknown}; known: classifier_run, '
                        f'predict, {", ".join(BENCHMARK_KEYS)}')
    fns = task.predict_fns()
    if predict not in fns:
      raise ConfigError(f'cadet.predict={predict!r}: the task offers {sorted(fns)}')
    self.embed = fns[predict]
    self.settings = {k: tuple(v) if isinstance(v, list) else v for k, v in settings.items()}
    self.config, self.artefacts = config, artefacts

  def run(self, variables) -> Iterator[tuple[str, float]]:
    from jaxcv.ood import features as features_lib  # pylint: disable=import-outside-toplevel
    classifier = (features_lib.load_classifier(self.classifier_run) if self.classifier_run
                  else None)
    name = (self.config.get('init_checkpoint') or '').rstrip('/').split('/')[-1]
    results = benchmark.run_detection(
        self.embed, variables, self.config.data.name, classifier=classifier,
        data_dir=self.config.data.data_dir, image_size=self.config.data.image_size,
        encoder_name=name or self.config.model.name, **self.settings)
    if self.artefacts is not None:
      self.artefacts.json(benchmark.RESULTS_FILE, results)
      self.artefacts.text('cadet_results.md', benchmark.results_markdown(results))
    yield from ((k, float(v)) for k, v in benchmark.flat_metrics(results).items())
