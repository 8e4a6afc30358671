"""The OOD evaluation (jaxcv/ood/evaluate.py) as an evaluator: detectors fitted on the ID
training split, scored on ID-test against each OOD set, for the weights the loop gives it.

Config keys (`config.evals.<name>`, type 'ood'):
  datasets         the OOD sets: comma-separated NAME or NAME@SPLIT, nested specs allowed
                   ('mnist,corrupt(kind=gaussian_noise,severity=5):cifar10,synthetic:n=64,size=16')
  detectors        detector specs (default 'msp,maxlogit,energy,mds,vim,knn')
  id_dataset       default config.data.name (read at config.data.image_size)
  train_split      the ID split detectors are fitted on (default config.data.train_split)
  id_test_split    default 'test'
  id_val_split     default '': `id_val_examples` (1000) random ID-test images become ID-val
  fit_examples     fit on this many random ID-train images (0: all)
  ood_examples     score at most this many random images per OOD set (0: all)
  batch_size       feature-pass batch (default 256)
  layers           also extract per-layer pooled features (for `mds(layer=...)`)
  cache            cache feature passes (default True) under cache_dir (default
                   $JAXCV_CACHE_DIR/ood_features)
  seed             subsets and the ID-val carve-out (default 0)

The weights are exported as a plain classifier by the task (`Task.export_classifier`: an AFD
run's D1 is folded into the head). Yields 'id_accuracy', '<ood set>/<detector>/<metric>' for
the metrics auroc, fpr95, aupr_in, aupr_out (percent, OpenOOD's), 'mean/<detector>/<metric>'
over the OOD sets and 'id_val_vs_id_test/<detector>/auroc' (the sanity check, near 50).
Artefacts under `<workdir>/<name>/`: ood_results.json, ood_results.md, ood_scores.npz (every
detector's scores of every split, keyed 'DETECTOR|SPLIT').

Evaluating a saved run: `evaluation_config(run, datasets=...)` (what
`python -m jaxcv.ood.evaluate` and configs/ood/evaluate.py build) is the run's own config with
total_steps=0, init_checkpoint=run and this evaluator alone.
"""

from __future__ import annotations

import logging
from typing import Iterator

import jax
import ml_collections

from jaxcv import inference
from jaxcv.errors import ConfigError
from jaxcv.evaluators.base import register
from jaxcv.ood import evaluate as evaluate_lib
from jaxcv.ood import metrics as metrics_lib
from jaxcv.ood.detectors import build_detectors

log = logging.getLogger(__name__)

DEFAULTS = dict(datasets='', detectors=evaluate_lib.DEFAULT_DETECTORS, id_dataset='',
                train_split='', id_test_split='test', id_val_split='', id_val_examples=1000,
                fit_examples=0, ood_examples=0, batch_size=256, layers=False, cache=True,
                cache_dir='', seed=0)


def options(eval_config, config) -> dict:
  """`evaluate_classifier` keyword arguments from the evaluator's config section."""
  c = {**DEFAULTS, **eval_config.to_dict()}
  return dict(
      id_dataset=c['id_dataset'] or config.data.name, ood_datasets=c['datasets'],
      detectors=c['detectors'], data_dir=config.data.data_dir or None,
      image_size=config.data.image_size, train_split=c['train_split'] or config.data.train_split,
      id_test_split=c['id_test_split'], id_val_split=c['id_val_split'] or None,
      id_val_examples=c['id_val_examples'], fit_examples=c['fit_examples'] or None,
      ood_examples=c['ood_examples'] or None, batch_size=c['batch_size'], layers=c['layers'],
      cache=(c['cache_dir'] or True) if c['cache'] else False, seed=c['seed'])


@register('ood')
class OODEvaluator:

  def __init__(self, eval_config, config, task, mesh, artefacts=None):
    del mesh  # The feature pass runs on the default device.
    self.options = options(eval_config, config)
    build_detectors(self.options['detectors'])  # Bad names fail before the run starts.
    for spec in evaluate_lib.split_datasets(self.options['ood_datasets']):
      evaluate_lib.parse_dataset(spec)
    self.task, self.config, self.artefacts = task, config, artefacts

  def run(self, variables) -> Iterator[tuple[str, float]]:
    model, plain = self.task.export_classifier(variables)
    classifier = inference.Classifier(
        model, jax.device_get(plain), name=self.config.init_checkpoint.rstrip('/').split('/')[-1]
        or self.config.model.name, config=self.config)
    options = dict(self.options)
    results, scores = evaluate_lib.evaluate_classifier(
        classifier, options.pop('id_dataset'), options.pop('ood_datasets'),
        options.pop('detectors'), **options)
    if self.artefacts is not None:
      self.artefacts.json('ood_results.json', results)
      self.artefacts.text('ood_results.md', evaluate_lib.markdown(results))
      self.artefacts.arrays('ood_scores.npz', **scores)
    yield 'id_accuracy', float(results['id_accuracy'])
    for spec, r in results['detectors'].items():
      for label, values in r['ood'].items():
        for metric in metrics_lib.METRICS:
          yield f'{label}/{spec}/{metric}', float(values[metric])
      if r['mean']:
        for metric in metrics_lib.METRICS:
          yield f'mean/{spec}/{metric}', float(r['mean'][metric])
      yield f'{evaluate_lib.SANITY}/{spec}/auroc', float(r[evaluate_lib.SANITY]['auroc'])


def evaluation_config(run: str, **settings) -> ml_collections.ConfigDict:
  """The evaluation-only config of the saved run at `run`: its own config (task, model, data),
  total_steps=0, init_checkpoint=run and one evaluator `ood` with `settings` (keys as above).
  `weights='ema'` evaluates its EMA weights (the run must have them; default: trained ones)."""
  weights = settings.pop('weights', 'plain')
  unknown = sorted(set(settings) - set(DEFAULTS))
  if unknown:
    raise ConfigError(f'unknown ood evaluator settings {unknown}; known: '
                       f'{sorted(DEFAULTS)}')
  if weights not in ('plain', 'ema'):
    raise ConfigError(f"weights={weights!r}: expected 'plain' or 'ema'")
  _, config = inference.run_config(run)
  config.total_steps = 0
  config.num_epochs = None
  config.init_checkpoint = str(run)
  config.init_weights = weights
  if 'adversarial' in config:  # Adversarial tasks read init_checkpoint's weights themselves.
    config.adversarial.init_from = 'ema' if weights == 'ema' else 'params'
  config.evals = ml_collections.ConfigDict({'ood': {**DEFAULTS, **settings, 'type': 'ood'}})
  config.progress_bar = False
  config.plot = False
  return config
