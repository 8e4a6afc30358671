"""Detectors on penultimate features z: Mahalanobis (MDS), Relative Mahalanobis (RMDS), ViM, KNN
and GradNorm. Every score is ID-ness (higher = more in-distribution). Statistics are fitted in
float64 numpy, with sklearn's EmpiricalCovariance conventions (maximum-likelihood covariance,
precision = pinvh(covariance)), as OpenOOD does."""

from __future__ import annotations

import functools
import logging
from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np
from scipy import linalg, special

from jaxcv.errors import ConfigError
from jaxcv.ood.detectors.base import BaseDetector, register
from jaxcv.ood.featureset import FeatureSet

log = logging.getLogger(__name__)


def _f64(x) -> np.ndarray:
  return np.asarray(x, np.float64)


def empirical_precision(x: np.ndarray, assume_centered: bool = False) -> np.ndarray:
  """sklearn `EmpiricalCovariance(assume_centered).fit(x).precision_`: the pseudo-inverse of the
  maximum-likelihood covariance. pinvh, not inv: the covariance of ReLU features is often
  singular (dead units), and pinvh drops those directions instead of blowing up."""
  x = _f64(x)
  if not assume_centered:
    x = x - x.mean(0)
  return linalg.pinvh(x.T @ x / len(x))


def class_statistics(z: np.ndarray, labels: np.ndarray, what: str):
  """(class means [K, D], the features centred on their class mean) for the K labels present."""
  labels = np.asarray(labels)
  classes = np.unique(labels)
  if len(classes) < 2:
    raise ConfigError(f'{what}: class-conditional statistics need at least two classes in the '
                      f'fitting set, got {classes.tolist()}')
  means = np.stack([z[labels == c].mean(0) for c in classes])
  return means, z - means[np.searchsorted(classes, labels)]


def mahalanobis(z: np.ndarray, means: np.ndarray, precision: np.ndarray) -> np.ndarray:
  """[N, K] squared distances (z - mu_k)^T P (z - mu_k), expanded into matrix products (float64
  keeps the expansion's cancellation harmless)."""
  zp = z @ precision
  return (np.sum(zp * z, -1)[:, None] - 2 * zp @ means.T
          + np.sum(means @ precision * means, -1)[None])


class _Gaussian(BaseDetector):
  """Class means and one shared (within-class) covariance of z on labelled ID data."""

  def __init__(self, layer: Optional[str] = None):
    self.layer = layer
    self.requires = frozenset({'layers' if layer else 'features'})
    self.fit_requires = self.requires | {'labels'}

  def _z(self, fs: FeatureSet) -> np.ndarray:
    if self.layer is None:
      return _f64(fs.features)
    if self.layer not in fs.layers:
      raise ConfigError(f'{self.spec}: feature set {fs.name!r} has no layer {self.layer!r}; it '
                        f'has {sorted(fs.layers)}')
    return _f64(fs.layers[self.layer])

  def _fit(self, train):
    z = self._z(train)
    self.means, centered = class_statistics(z, train.labels, self.spec)
    self.precision = empirical_precision(centered)

  def _class_distances(self, fs):
    return mahalanobis(self._z(fs), self.means, self.precision)


@register('mds')
class MDS(_Gaussian):
  """Mahalanobis (Lee et al. 2018) without input preprocessing or layer ensembling, as OpenOOD's
  MDS: score = -min_c (z - mu_c)^T S^-1 (z - mu_c), means and shared covariance S fitted on
  labelled ID-train features. `layer` names a per-layer pooled feature (FeatureSet.layers)
  instead of the penultimate one. Higher = ID."""

  def _score(self, fs):
    return -self._class_distances(fs).min(-1)


@register('rmds')
class RMDS(_Gaussian):
  """Relative Mahalanobis (Ren et al. 2021) as in OpenOOD: max_c [-d_c(z) + d_0(z)], d_0 the
  distance under one class-agnostic Gaussian fitted on all ID-train features. Higher = ID."""

  def _fit(self, train):
    super()._fit(train)
    z = self._z(train)
    self.whole_mean = z.mean(0, keepdims=True)
    self.whole_precision = empirical_precision(z)

  def _score(self, fs):
    background = mahalanobis(self._z(fs), self.whole_mean, self.whole_precision)[:, 0]
    return background - self._class_distances(fs).min(-1)


@register('vim')
class ViM(BaseDetector):
  """Virtual-logit matching (Wang et al. 2022) as in OpenOOD: origin u = -pinv(W) b; the residual
  r(z) = ||(z - u) P_perp|| off the top-`dim` principal directions of the ID-train (z - u); alpha
  = mean ID-train max-logit / mean ID-train r; score = logsumexp(f) - alpha * r. Higher = ID.

  dim defaults to min(256, D // 2): OpenOOD's 256 for 512-d ResNet-18 features, and half of
  smaller feature spaces (the ViM paper keeps roughly half as well).
  """
  requires = frozenset({'logits', 'features', 'head'})
  fit_requires = requires

  def __init__(self, dim: Optional[int] = None):
    if dim is not None and (not isinstance(dim, int) or dim < 1):
      raise ConfigError(f'vim dim must be a positive int, got {dim!r}')
    self.dim = dim

  def _fit(self, train):
    z = _f64(train.features)
    size = z.shape[1]
    dim = min(256, size // 2) if self.dim is None else self.dim
    if not 0 < dim < size:
      raise ConfigError(f'{self.spec}: dim must be in [1, {size - 1}] for {size}-d features')
    kernel, bias = _f64(train.head.kernel), _f64(train.head.bias)
    self.origin = -np.linalg.pinv(kernel.T) @ bias
    x = z - self.origin
    eigvals, eigvecs = np.linalg.eigh(x.T @ x / len(x))
    self.null_space = np.ascontiguousarray(eigvecs[:, np.argsort(-eigvals)[dim:]])
    residual = np.linalg.norm(x @ self.null_space, axis=-1)
    if not residual.mean() > 0:
      raise ConfigError(f'{self.spec}: the ID-train features have no residual off the top {dim} '
                        'principal directions; use a smaller dim')
    self.alpha = _f64(train.logits).max(-1).mean() / residual.mean()

  def _score(self, fs):
    residual = np.linalg.norm((_f64(fs.features) - self.origin) @ self.null_space, axis=-1)
    return special.logsumexp(_f64(fs.logits), axis=-1) - self.alpha * residual


def _normalize(x) -> np.ndarray:
  x = np.asarray(x, np.float32)
  return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


@functools.partial(jax.jit, static_argnames='k')
def _kth_similarity(queries, bank, k):
  # HIGHEST: without it GPUs may use TF32, whose 10-bit mantissa reorders close neighbours.
  similarity = jnp.matmul(queries, bank.T, precision=jax.lax.Precision.HIGHEST)
  return jax.lax.top_k(similarity, k)[0][:, -1]


@register('knn')
class KNN(BaseDetector):
  """Deep nearest neighbours (Sun et al. 2022) as in OpenOOD: score = -(L2 distance from the
  normalised z to its k-th nearest normalised ID-train feature). Higher = ID. OpenOOD's faiss
  index returns squared distances: the same order, so the same metrics.

  Exact brute force, query chunks against the whole bank: for unit vectors the k-th nearest is
  the k-th largest dot product, one matmul and a top-k per chunk. On an accelerator this runs in
  jnp where the features are; on the CPU in numpy, since XLA's CPU top_k sorts whole rows (~4x
  slower than np.partition). sklearn's NearestNeighbors gives the same answer (the tests check
  it) but on the CPU only, minutes where a GPU takes seconds at ImageNet scale; faiss is not a
  jaxcv dependency.
  """
  requires = frozenset({'features'})
  fit_requires = requires

  def __init__(self, k: int = 50):
    if not isinstance(k, int) or k < 1:
      raise ConfigError(f'knn k must be a positive int, got {k!r}')
    self.k = k

  def _fit(self, train):
    if self.k > len(train):
      raise ConfigError(f'{self.spec}: k is larger than the {len(train)} fitting examples')
    self.bank = _normalize(train.features)
    self._device_bank = None  # Placed on the accelerator at the first score there.

  def _kth_similarity(self, queries: np.ndarray) -> np.ndarray:
    if jax.default_backend() == 'cpu':
      similarity = queries @ self.bank.T
      return -np.partition(-similarity, self.k - 1, axis=1)[:, self.k - 1]
    return np.asarray(_kth_similarity(queries, self._device_bank, self.k))

  def _score(self, fs):
    if jax.default_backend() != 'cpu' and self._device_bank is None:
      self._device_bank = jnp.asarray(self.bank)
    queries = _normalize(fs.features)
    # Chunks of at most 2^26 similarities (256 MB), padded to one shape: one compilation.
    chunk = min(int(np.clip(2**26 // len(self.bank), 1, 4096)), len(queries))
    queries = np.pad(queries, ((0, -len(queries) % chunk), (0, 0)))
    kth = np.concatenate([self._kth_similarity(queries[i:i + chunk])
                          for i in range(0, len(queries), chunk)])[:len(fs)]
    return -np.sqrt(np.maximum(2 - 2 * kth.astype(np.float64), 0))


@register('gradnorm')
class GradNorm(BaseDetector):
  """GradNorm (Huang et al. 2021): the L1 norm of the head-weight gradient of KL(uniform || p),
  in closed form for a linear head: ||p - 1/C||_1 * ||z||_1. Higher = ID. OpenOOD back-propagates
  all-ones targets instead, which multiplies every score by C: the same metrics."""
  requires = frozenset({'logits', 'features'})

  def _score(self, fs):
    p = special.softmax(_f64(fs.logits), axis=-1)
    return np.abs(p - 1 / p.shape[1]).sum(-1) * np.abs(_f64(fs.features)).sum(-1)
