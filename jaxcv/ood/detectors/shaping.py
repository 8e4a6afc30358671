"""Activation shaping: edit the penultimate features z (or the head), re-apply the head and take
the Energy score logsumexp(f'). ReAct, DICE, ASH and SCALE, as OpenOOD implements them on the
pooled features. Every score is ID-ness (higher = more in-distribution)."""

from __future__ import annotations

import numpy as np
from scipy import special

from jaxcv.errors import ConfigError
from jaxcv.ood.detectors.base import BaseDetector, check_percentile, register


def _energy(logits: np.ndarray) -> np.ndarray:
  return special.logsumexp(logits, axis=-1)


def _keep_count(size: int, percentile: float) -> int:
  """How many of `size` activations survive pruning at `percentile`, as OpenOOD rounds it."""
  keep = size - int(np.round(size * percentile / 100.0))
  if keep < 1:
    raise ConfigError(f'percentile {percentile} prunes all {size} features; lower it')
  return keep


def _sharpening(total: np.ndarray, kept_total: np.ndarray) -> np.ndarray:
  """exp(sum z / sum kept z); 1 where nothing is kept (all-zero features), not NaN."""
  safe = np.where(kept_total != 0, kept_total, 1)
  return np.exp(np.where(kept_total != 0, total / safe, 0))


def _top_mask(z: np.ndarray, keep: int) -> np.ndarray:
  """Per row, True at the `keep` largest entries (ties broken by position, like a top-k)."""
  order = np.argsort(-z, axis=-1, kind='stable')[:, :keep]
  mask = np.zeros(z.shape, bool)
  np.put_along_axis(mask, order, True, axis=-1)
  return mask


@register('react')
class ReAct(BaseDetector):
  """ReAct (Sun et al. 2021): clip z at the `percentile`-th percentile c of all ID activations,
  then Energy of head(min(z, c)). Higher = ID. Fitted on ID-val (`fit_split = 'val'`), as OpenOOD
  does."""
  requires = frozenset({'features', 'head'})
  fit_requires = frozenset({'features'})
  fit_split = 'val'

  def __init__(self, percentile: float = 90):
    self.percentile = check_percentile('react percentile', percentile, high_open=False)

  def _fit(self, train):
    self.threshold = float(np.percentile(np.asarray(train.features, np.float64),
                                         self.percentile))

  def _score(self, fs):
    return _energy(fs.head(np.minimum(np.asarray(fs.features, np.float64), self.threshold)))


@register('dice')
class DICE(BaseDetector):
  """DICE (Sun & Li 2022) as in OpenOOD: contribution w_dc * mean ID-train z_d; head weights whose
  contribution is not above its `p`-th percentile are zeroed; Energy of the sparsified head.
  Higher = ID."""
  requires = frozenset({'features', 'head'})
  fit_requires = frozenset({'features', 'head'})

  def __init__(self, p: float = 90):
    self.p = check_percentile('dice p', p)

  def _fit(self, train):
    kernel = np.asarray(train.head.kernel, np.float64)  # [D, C]
    contribution = np.asarray(train.features, np.float64).mean(0)[:, None] * kernel
    self.mask = contribution > np.percentile(contribution, self.p)

  def _score(self, fs):
    kernel = np.asarray(fs.head.kernel, np.float64) * self.mask
    return _energy(np.asarray(fs.features, np.float64) @ kernel + fs.head.bias)


ASH_VARIANTS = ('s', 'b', 'p')


@register('ash')
class ASH(BaseDetector):
  """ASH (Djurisic et al. 2023) on the pooled features, as OpenOOD: keep each example's top
  (100 - `percentile`) % activations, zero the rest, then
    's' (ASH-S, default): scale the kept ones by exp(sum z / sum kept z);
    'b' (ASH-B): set the kept ones to sum z / (number kept);
    'p' (ASH-P): leave them as they are;
  and take the Energy of the head. Higher = ID."""
  requires = frozenset({'features', 'head'})

  def __init__(self, percentile: float = 90, variant: str = 's'):
    self.percentile = check_percentile('ash percentile', percentile)
    if variant not in ASH_VARIANTS:
      raise ConfigError(f"ash variant must be one of {ASH_VARIANTS}, got {variant!r}")
    self.variant = variant

  def _score(self, fs):
    z = np.asarray(fs.features, np.float64)
    keep = _keep_count(z.shape[1], self.percentile)
    mask = _top_mask(z, keep)
    total = z.sum(-1, keepdims=True)
    if self.variant == 's':
      z = np.where(mask, z, 0)
      z = z * _sharpening(total, z.sum(-1, keepdims=True))
    elif self.variant == 'b':
      z = np.where(mask, total / keep, 0)
    else:
      z = np.where(mask, z, 0)
    return _energy(fs.head(z))


@register('scale')
class SCALE(BaseDetector):
  """SCALE (Xu et al. 2024) as in OpenOOD: ASH-S's factor exp(sum z / sum of the top
  (100 - `percentile`) % of z) applied to all of z, nothing pruned; Energy of the head.
  Higher = ID."""
  requires = frozenset({'features', 'head'})

  def __init__(self, percentile: float = 85):
    self.percentile = check_percentile('scale percentile', percentile)

  def _score(self, fs):
    z = np.asarray(fs.features, np.float64)
    kept = np.where(_top_mask(z, _keep_count(z.shape[1], self.percentile)), z, 0)
    return _energy(fs.head(z * _sharpening(z.sum(-1, keepdims=True), kept.sum(-1, keepdims=True))))
