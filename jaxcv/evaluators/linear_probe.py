"""Linear-probe accuracy of frozen features: the standard yardstick of a self-supervised encoder.

Features of a (seeded subset of a) training split and of a test split come from one of the task's
predict functions (default 'features': SimCLR's pooled encoder output), are standardised with the
training statistics, and a multinomial logistic regression (scikit-learn, L-BFGS) is fitted on
them; the evaluator reports its test accuracy. SimCLR trains the probe with SGD on the full
training set; an L-BFGS fit of the same convex objective on a subset is what a CPU affords.

Config keys (`config.evals.<name>`, type 'linear_probe'): dataset (default config.data.name),
train_split ('train'), test_split ('test'), train_examples (0: all), test_examples (0: all),
predict ('features'), C (inverse L2 strength, 1.0), max_iter (1000), batch_size (500), seed.
Yields 'accuracy' and 'train_accuracy' (fractions) and 'feature_dim'.
"""

from __future__ import annotations

from typing import Iterator

import jax
import numpy as np

from jaxcv.data.registry import load_dataset
from jaxcv.errors import ConfigError
from jaxcv.evaluators.base import register
from jaxcv.ood.features import map_batches
from jaxcv.ood.shifts import subsample

DEFAULTS = {'dataset': '', 'train_split': 'train', 'test_split': 'test', 'train_examples': 0,
            'test_examples': 0, 'predict': 'features', 'C': 1.0, 'max_iter': 1000,
            'batch_size': 500, 'seed': 0}


def fit_probe(train_x: np.ndarray, train_y: np.ndarray, C: float = 1.0,
              max_iter: int = 1000):
  """A standardise -> logistic-regression pipeline fitted on features [N, D] and labels [N]."""
  from sklearn.linear_model import LogisticRegression  # pylint: disable=import-outside-toplevel
  from sklearn.pipeline import make_pipeline  # pylint: disable=import-outside-toplevel
  from sklearn.preprocessing import StandardScaler  # pylint: disable=import-outside-toplevel
  probe = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=max_iter))
  return probe.fit(np.asarray(train_x, np.float64), np.asarray(train_y))


@register('linear_probe')
class LinearProbeEvaluator:

  def __init__(self, eval_config, config, task, mesh):
    del mesh  # Feature passes run on the default device, a batch at a time.
    settings = {k: v for k, v in eval_config.to_dict().items() if k != 'type'}
    unknown = sorted(set(settings) - set(DEFAULTS))
    if unknown:
      raise ConfigError(f'unknown linear_probe settings {unknown}; known: {sorted(DEFAULTS)}')
    self.settings = {**DEFAULTS, **settings}
    s = self.settings
    fns = task.predict_fns()
    if s['predict'] not in fns:
      raise ConfigError(f'linear_probe.predict={s["predict"]!r}: the task offers '
                        f'{sorted(fns)}')
    self._features = jax.jit(fns[s['predict']])
    name = s['dataset'] or config.data.name
    load = lambda split, n, seed: subsample(
        load_dataset(name, split, config.data.data_dir, config.data.image_size), n, seed)
    self.train = load(s['train_split'], s['train_examples'], s['seed'])
    self.test = load(s['test_split'], s['test_examples'], s['seed'] + 1)
    for data in (self.train, self.test):
      if np.asarray(data.labels).ndim != 1:
        raise ConfigError('linear_probe needs one class label per image')

  def _extract(self, variables, images: np.ndarray) -> np.ndarray:
    fn = lambda v, batch: self._features(v, batch.astype(np.float32) / 255.0)
    return np.asarray(map_batches(fn, variables, images, self.settings['batch_size']), np.float64)

  def run(self, variables) -> Iterator[tuple[str, float]]:
    train_x = self._extract(variables, self.train.images)
    test_x = self._extract(variables, self.test.images)
    probe = fit_probe(train_x, self.train.labels, self.settings['C'], self.settings['max_iter'])
    yield 'accuracy', float(probe.score(test_x, self.test.labels))
    yield 'train_accuracy', float(probe.score(train_x, self.train.labels))
    yield 'feature_dim', float(train_x.shape[1])
