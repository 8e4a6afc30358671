"""CADet's single-sample score (CADet §(b)) in closed form.

For an image x with n_t random views embedded as unit vectors z_1..z_n (rows of Z):
  m_in(x)  = mean_{i != j} <z_i, z_j> = (|sum_i z_i|² - sum_i |z_i|²) / (n(n - 1))
             (the fork's (sum ZZ^T - tr ZZ^T) / (n(n-1)), in O(n d) instead of O(n² d));
  m_out(x) = mean over x's views and the views of a held-out ID set X_val1 of <z, z'>
           = <mean_i z_i(x), mean of every view of X_val1>.
Both are higher for in-distribution images (jaxcv's ID-ness sign). The combination is
  cadet(x) = m_in(x) + gamma * m_out(x), gamma = std(m_in) / std(m_out) on a second ID split
X_val2, which puts the two terms on one scale using ID data only (the paper's exact gamma rule
is not recovered; docs/cadet.md). `p_values` turns scores into empirical p-values against the
X_val2 scores: monotone, so AUROC is unchanged, but thresholding at p <= alpha then flags
about alpha of ID inputs, whatever the score's scale.

The views follow the fork's preprocessor: RandomResizedCrop to the input size with scale
(min_scale, 1) and a horizontal flip, no colour jitter (jaxcv/data/contrastive.py's ops).
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np

from jaxcv.data import augment
from jaxcv.data.contrastive import random_resized_crop
from jaxcv.errors import ConfigError
from jaxcv.ood import features as features_lib

TERMS = ('m_in', 'm_out', 'cadet')
EmbedFn = Callable[..., jax.Array]  # (variables, float images [N, H, W, C]) -> [N, d]


def m_in(z: jax.Array) -> jax.Array:
  """[N, n_t, d] view embeddings (unit rows) -> [N] mean pairwise similarity of distinct views."""
  n_t = z.shape[1]
  total = jnp.sum(z, axis=1)
  return (jnp.sum(total * total, axis=1) - jnp.sum(z * z, axis=(1, 2))) / (n_t * (n_t - 1))


def views(rng: jax.Array, images: jax.Array, n_views: int, min_scale: float) -> jax.Array:
  """[N, H, W, C] -> [N * n_views, H, W, C]: random resized crops (scale (min_scale, 1)), each
  flipped with probability 1/2; image i's views are rows i * n_views ... (i + 1) * n_views - 1."""
  repeated = jnp.repeat(images, n_views, axis=0)
  crop_rng, flip_rng = jax.random.split(rng)
  cropped = random_resized_crop(crop_rng, repeated, scale=(min_scale, 1.0))
  return augment.random_flip(flip_rng, cropped)


@dataclasses.dataclass
class ViewStats:
  """What every CADet term needs of a set of images: m_in [N] and the mean view embedding."""
  m_in: np.ndarray
  mean_embedding: np.ndarray  # [N, d]

  def __len__(self) -> int:
    return len(self.m_in)


def view_stats(embed: EmbedFn, variables, images: np.ndarray, rng: jax.Array, *, n_views: int,
               min_scale: float, image_shape=None, batch_size: int = 100,
               cache: Optional[dict] = None) -> ViewStats:
  """ViewStats of uint8 or float [0, 1] images (resized to `image_shape` first, grey -> RGB),
  n_views random views each; one jitted function per (batch, n_views, min_scale, shape)."""
  if n_views < 2:
    raise ConfigError(f'CADet needs n_views >= 2 (m_in averages distinct pairs), got {n_views}')
  if not 0 < min_scale <= 1:
    raise ConfigError(f'CADet min_scale must be in (0, 1], got {min_scale}')
  cache = {} if cache is None else cache
  key = (id(embed), n_views, float(min_scale), tuple(image_shape or ()))
  if key not in cache:
    def stats(variables, batch, batch_rng):
      x = features_lib.prepare_images(batch, image_shape)
      z = embed(variables, views(batch_rng, x, n_views, min_scale)).astype(jnp.float32)
      z = z / jnp.linalg.norm(z, axis=1, keepdims=True).clip(1e-12)
      z = z.reshape(x.shape[0], n_views, -1)
      return m_in(z), jnp.mean(z, axis=1)
    cache[key] = jax.jit(stats)
  fn = cache[key]
  batch_size = min(batch_size, len(images))
  outs = []
  for i, start in enumerate(range(0, len(images), batch_size)):
    batch = images[start:start + batch_size]
    pad = batch_size - len(batch)
    if pad:  # One compilation: the last batch padded.
      batch = np.concatenate([batch, np.zeros((pad, *batch.shape[1:]), batch.dtype)])
    m, mean = jax.device_get(fn(variables, batch, jax.random.fold_in(rng, i)))
    outs.append((m[:batch_size - pad], mean[:batch_size - pad]))
  return ViewStats(np.concatenate([o[0] for o in outs]).astype(np.float64),
                   np.concatenate([o[1] for o in outs]).astype(np.float64))


@dataclasses.dataclass
class Calibration:
  """Fitted on ID data: the X_val1 mean view embedding, gamma and the X_val2 scores per term."""
  reference: np.ndarray  # [d]
  gamma: float
  val2_scores: dict[str, np.ndarray]

  def terms(self, stats: ViewStats) -> dict[str, np.ndarray]:
    """{'m_in', 'm_out', 'cadet'}: ID-ness scores, higher = more in-distribution."""
    out = stats.mean_embedding @ self.reference
    return {'m_in': stats.m_in, 'm_out': out, 'cadet': stats.m_in + self.gamma * out}

  def p_values(self, term: str, scores: np.ndarray) -> np.ndarray:
    """Empirical p-values (1 + #{X_val2 scores <= s}) / (1 + |X_val2|): small = unlike ID."""
    ref = np.sort(self.val2_scores[term])
    return (1 + np.searchsorted(ref, np.asarray(scores), side='right')) / (1 + len(ref))


def calibrate(val1: ViewStats, val2: ViewStats) -> Calibration:
  """The reference embedding from X_val1; gamma and the reference scores from X_val2."""
  if len(val1) < 1 or len(val2) < 2:
    raise ConfigError('CADet calibration needs X_val1 and X_val2 images (>= 1 and >= 2)')
  reference = np.mean(val1.mean_embedding, axis=0)
  out = val2.mean_embedding @ reference
  gamma = float(np.std(val2.m_in) / max(np.std(out), 1e-12))
  partial = Calibration(reference, gamma, {})
  partial.val2_scores = partial.terms(val2)
  return partial
