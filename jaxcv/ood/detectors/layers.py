"""Detectors on several layers: Mahalanobis summed over layers (BROAD's "mds-all") and GRAM
(Sastry & Oore 2020), which reads Gram-matrix statistics of unpooled feature maps.

The feature pass (features.extract with `gram_powers`) stores, per sown layer l and power p, the
row sums of the Gram matrix of the feature map raised to p, [N, C_l], as FeatureSet.layers
'gram/p{p}/{l}' (`gram_row_sums`). Every score is ID-ness (higher = more in-distribution).
"""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxcv.errors import ConfigError
from jaxcv.ood.detectors.base import BaseDetector, register
from jaxcv.ood.detectors.feature import class_statistics, empirical_precision, mahalanobis
from jaxcv.ood.featureset import FeatureSet

GRAM_PREFIX = 'gram/'


def gram_key(power: int, layer: str) -> str:
  return f'{GRAM_PREFIX}p{power}/{layer}'


def gram_row_sums(feature_map: jax.Array, power: int) -> jax.Array:
  """[N, ..., C] feature map F -> [N, C]: the row sums of the Gram matrix G_p = F^p (F^p)^T over
  positions, as sign(g)|g|^(1/p) (OpenOOD's / Sastry & Oore's G_p). Row sums without forming the
  C x C matrix: sum_c' G[c, c'] = sum_s F^p[s, c] * sum_c' F^p[s, c']. float32, jittable."""
  x = feature_map.astype(jnp.float32)
  x = x.reshape(x.shape[0], -1, x.shape[-1]) ** power
  g = jnp.einsum('nsc,ns->nc', x, x.sum(-1), precision=jax.lax.Precision.HIGHEST)
  return jnp.sign(g) * jnp.abs(g) ** (1.0 / power)


def pooled_layers(fs: FeatureSet) -> list[str]:
  """The per-layer pooled features of `fs` (not the Gram statistics), sorted by name."""
  return sorted(k for k in fs.layers if not k.startswith(GRAM_PREFIX))


@register('mds_all')
class MDSAll(BaseDetector):
  """Mahalanobis summed over layers, BROAD's "mds-all": sum_l -min_c (z_l - mu_lc)^T S_l^-1
  (z_l - mu_lc), one class-conditional Gaussian with shared covariance per pooled layer, fitted
  on labelled ID-train features (as `mds(layer=l)`), no layer weights and no input
  preprocessing. Higher = ID."""
  requires = frozenset({'layers'})
  fit_requires = frozenset({'layers', 'labels'})

  def _fit(self, train):
    self.layers = pooled_layers(train)
    if not self.layers:
      raise ConfigError(f'{self.spec}: feature set {train.name!r} has no per-layer features')
    self.stats = {}
    for layer in self.layers:
      means, centered = class_statistics(np.asarray(train.layers[layer], np.float64),
                                         train.labels, self.spec)
      self.stats[layer] = (means, empirical_precision(centered))

  def _score(self, fs):
    total = np.zeros(len(fs))
    for layer in self.layers:
      if layer not in fs.layers:
        raise ConfigError(f'{self.spec}: feature set {fs.name!r} has no layer {layer!r}')
      means, precision = self.stats[layer]
      total -= mahalanobis(np.asarray(fs.layers[layer], np.float64), means, precision).min(-1)
    return total


def deviation(values: np.ndarray, low: np.ndarray, high: np.ndarray) -> np.ndarray:
  """Sastry & Oore's per-channel deviation from the range [low, high], summed over channels:
  (low - v)/|low| below, (v - high)/|high| above (1e-6 keeps an all-zero channel finite)."""
  below = np.maximum(low - values, 0) / np.abs(low + 1e-6)
  above = np.maximum(values - high, 0) / np.abs(high + 1e-6)
  return (below + above).sum(-1)


@register('gram')
class GRAM(BaseDetector):
  """GRAM (Sastry & Oore 2020): for every layer l and power p in 1..`powers`, the min and max of
  each Gram row sum (`gram_row_sums`) over the ID examples of each class; an input's deviation
  from the ranges of its predicted class, per layer summed over powers and channels, is divided
  by the layer's mean deviation on held-out ID data, and the layers are summed. Score = -total.
  Higher = ID.

  The ranges are fitted on the labelled fitting set minus a seeded `holdout` fraction, whose mean
  deviations normalise the layers (the paper's validation-set normaliser; OpenOOD divides by a
  constant 50 instead, which weighs layers by their raw deviation).
  """
  requires = frozenset({'logits', 'layers'})
  fit_requires = requires | {'labels'}

  def __init__(self, powers: int = 5, holdout: float = 0.1):
    if not isinstance(powers, int) or powers < 1:
      raise ConfigError(f'gram powers must be a positive int, got {powers!r}')
    if not 0 < float(holdout) < 1:
      raise ConfigError(f'gram holdout must be in (0, 1), got {holdout}')
    self.powers = powers
    self.holdout = float(holdout)

  @property
  def gram_powers(self) -> tuple[int, ...]:
    """What the feature pass must compute for this detector."""
    return tuple(range(1, self.powers + 1))

  def _layer_values(self, fs: FeatureSet) -> dict[str, np.ndarray]:
    """layer -> [N, powers, C_l] Gram row sums."""
    layers = sorted({k.split('/', 2)[2] for k in fs.layers if k.startswith(GRAM_PREFIX)})
    if not layers:
      raise ConfigError(f'{self.spec}: feature set {fs.name!r} has no Gram statistics; extract '
                        f'features with gram_powers={self.gram_powers}')
    out = {}
    for layer in layers:
      keys = [gram_key(p, layer) for p in self.gram_powers]
      missing = [k for k in keys if k not in fs.layers]
      if missing:
        raise ConfigError(f'{self.spec}: feature set {fs.name!r} lacks {missing}')
      out[layer] = np.stack([np.asarray(fs.layers[k], np.float64) for k in keys], 1)
    return out

  def _raw_deviations(self, values: dict[str, np.ndarray], classes: np.ndarray) -> np.ndarray:
    """[N, L] deviations per layer (summed over powers and channels) from the class ranges."""
    out = np.zeros((len(classes), len(self.layers)))
    for j, layer in enumerate(self.layers):
      low, high = self.ranges[layer]
      for c in np.unique(classes):
        rows = classes == c
        out[rows, j] = deviation(values[layer][rows], low[c], high[c]).sum(-1)
    return out

  def _fit(self, train):
    values = self._layer_values(train)
    self.layers = sorted(values)
    labels = np.asarray(train.labels)
    self.num_classes = train.num_classes
    order = np.random.default_rng(0).permutation(len(labels))
    cut = int(round(len(labels) * self.holdout))
    held, fit = np.sort(order[:cut]), np.sort(order[cut:])
    if not len(held) or not len(fit):
      raise ConfigError(f'{self.spec}: {len(labels)} fitting examples are too few to hold out '
                        f'{self.holdout:.0%}')
    missing = sorted(set(range(self.num_classes)) - set(labels[fit].tolist()))
    if missing:
      raise ConfigError(f'{self.spec}: no fitting examples of classes {missing}')
    self.ranges = {}
    for layer in self.layers:
      v = values[layer][fit]
      low = np.stack([v[labels[fit] == c].min(0) for c in range(self.num_classes)])
      high = np.stack([v[labels[fit] == c].max(0) for c in range(self.num_classes)])
      self.ranges[layer] = (low, high)
    held_values = {k: v[held] for k, v in values.items()}
    predicted = np.asarray(train.logits)[held].argmax(-1)
    mean = self._raw_deviations(held_values, predicted).mean(0)
    self.normalizer = np.where(mean > 0, mean, 1.0)  # A layer never off-range weighs 1.

  def _score(self, fs):
    values = self._layer_values(fs)
    absent = sorted(set(self.layers) - set(values))
    if absent:
      raise ConfigError(f'{self.spec}: feature set {fs.name!r} has no Gram statistics of {absent}')
    predicted = np.asarray(fs.logits).argmax(-1)
    return -(self._raw_deviations(values, predicted) / self.normalizer).sum(-1)


def gram_powers_of(detectors: Sequence[BaseDetector]) -> tuple[int, ...]:
  """The Gram powers a feature pass must compute for `detectors` (empty when none needs any)."""
  return tuple(sorted({p for d in detectors for p in getattr(d, 'gram_powers', ())}))
