"""The Detector protocol, its shared base class and the name -> detector registry."""

from __future__ import annotations

import inspect
from typing import ClassVar, Protocol, runtime_checkable

import numpy as np

from jaxcv import plugins
from jaxcv.errors import ConfigError
from jaxcv.ood.featureset import FeatureSet

# A paper's detectors register from its own package, listed in `modules` (jaxcv/plugins.py).
DETECTORS = plugins.Registry('OOD detector', modules={'cadet': 'jaxcv.cadet.detector'})


def register(name: str):
  """Class decorator: makes the detector buildable as `name` or `name(key=value, ...)`."""
  def wrap(cls):
    cls.name = name
    return DETECTORS.register(name)(cls)
  return wrap


@runtime_checkable
class Detector(Protocol):
  """A post-hoc OOD detector. `score` returns ID-ness: higher = more in-distribution.

  requires: what `score` needs of a FeatureSet ('logits', 'features', 'head', 'layers'), or
    'model' for detectors that need input gradients (they score images, see `gradient.ODIN`),
    or 'images' for detectors that embed random views of images themselves: they implement
    `fit_images(embed, variables, images, rng)` and `score_images(embed, variables, images,
    rng)` with `embed(variables, float images) -> [N, d]` (CADet, jaxcv/cadet/detector.py).
  fit_requires: what `fit` needs; empty for stateless detectors, whose `fit` does nothing.
  fit_split: the ID split `fit` expects, as OpenOOD sets it up: 'train' or 'val'.
  spec: the canonical `name(key=value, ...)` the detector was built from.
  """
  requires: frozenset[str]
  fit_requires: frozenset[str]
  fit_split: str
  spec: str

  def fit(self, train: FeatureSet) -> 'Detector':
    ...

  def score(self, fs: FeatureSet) -> np.ndarray:
    ...


class BaseDetector:
  """Checks requirements and fitting; subclasses implement `_score` (and `_fit` when stateful).

  Computations run in float64 numpy unless a subclass says otherwise.
  """
  name: ClassVar[str] = ''
  requires: frozenset[str] = frozenset({'logits'})
  fit_requires: frozenset[str] = frozenset()
  fit_split: str = 'train'
  _fitted: bool = False

  def __init__(self):
    """Subclasses with settings take them as keyword arguments stored as same-named attributes."""

  @property
  def spec(self) -> str:
    """`name(key=value, ...)` with the constructor arguments that differ from their defaults."""
    params = list(inspect.signature(type(self).__init__).parameters.values())[1:]
    args = ', '.join(f'{p.name}={getattr(self, p.name)!r}' for p in params
                     if getattr(self, p.name) != p.default)
    return f'{self.name}({args})' if args else self.name

  def __repr__(self) -> str:
    return self.spec

  def _check(self, fs: FeatureSet, requirements, what: str) -> None:
    missing = fs.missing(requirements)
    if missing:
      raise ConfigError(f'{self.spec}.{what} needs {", ".join(missing)}, which feature set '
                        f'{fs.name!r} does not hold')

  def fit(self, train: FeatureSet) -> 'BaseDetector':
    """Fits the detector's statistics on ID data (a no-op for stateless detectors)."""
    if self.fit_requires:
      self._check(train, self.fit_requires, 'fit')
      self._fit(train)
      self._fitted = True
    return self

  def score(self, fs: FeatureSet) -> np.ndarray:
    """float64 [N] ID-ness scores: higher = more in-distribution."""
    if self.fit_requires and not self._fitted:
      raise RuntimeError(f'{self.spec}: call fit() on ID data before score()')
    self._check(fs, self.requires, 'score')
    scores = np.asarray(self._score(fs), np.float64)
    if scores.shape != (len(fs),):
      raise AssertionError(f'{self.spec} returned scores of shape {scores.shape} for '
                           f'{len(fs)} examples')
    return scores

  def _fit(self, train: FeatureSet) -> None:
    del train

  def _score(self, fs: FeatureSet) -> np.ndarray:
    raise NotImplementedError


def check_percentile(name: str, value, low_open: bool = False, high_open: bool = True) -> float:
  """A percentile in [0, 100] (bounds excluded as asked): a clear error at build time."""
  value = float(value)
  ok = (value > 0 if low_open else value >= 0) and (value < 100 if high_open else value <= 100)
  if not ok:
    raise ConfigError(f'{name} must be a percentile in {"(" if low_open else "["}0, 100'
                      f'{")" if high_open else "]"}, got {value}')
  return value
