"""Generative quality metrics: FID and KID from streaming feature statistics.

- FID (Heusel et al. 2017): the Fréchet distance between Gaussians fitted to the features of real
  and generated images, computed as pytorch-fid does (scipy `sqrtm`, a small diagonal offset when
  the product of covariances is singular, imaginary parts from round-off dropped).
- KID (Bińkowski et al. 2018): the unbiased MMD² with the cubic polynomial kernel
  k(x, y) = (x·y / d + 1)³, averaged over random subsets as torch-fidelity and clean-fid do.

Statistics are accumulated on the host in float64 batch by batch (`FeatureStats`), so the
number of images is limited by time, not memory; KID keeps a bounded sample of the features.
Every result names the feature space it was computed in (`feature_space`): numbers from
different feature spaces (Inception-v3 pool-3 vs a jaxcv classifier) are not comparable.
Feature extractors and reference-statistics caching live in `jaxcv.diffusion.fid_features`.
"""

from __future__ import annotations

import dataclasses
import logging
import warnings
from typing import Any, Optional

import numpy as np
import scipy.linalg

from jaxcv.errors import UserError

log = logging.getLogger(__name__)


class FeatureStats:
  """Running mean and covariance of feature vectors, in float64 on the host.

  Sums are taken around a shift (the first batch's mean), which keeps the covariance accurate
  when features have a large common offset. Up to `keep` feature rows are kept (the first ones
  seen, in float32) for KID.
  """

  def __init__(self, feature_space: str, keep: int = 0):
    self.feature_space = feature_space
    self.keep = keep
    self.count = 0
    self._shift = self._sum = self._outer = None
    self._kept: list[np.ndarray] = []
    self._num_kept = 0

  def update(self, features: Any) -> None:
    features = np.asarray(features, np.float64)
    if features.ndim != 2:
      raise ValueError(f'features must be [N, D], got shape {features.shape}')
    if self._shift is None:
      dim = features.shape[1]
      self._shift = features.mean(0) if len(features) else np.zeros(dim)
      self._sum, self._outer = np.zeros(dim), np.zeros((dim, dim))
    elif features.shape[1] != len(self._shift):
      raise ValueError(f'features have {features.shape[1]} dimensions, earlier ones had '
                       f'{len(self._shift)}')
    centred = features - self._shift
    self._sum += centred.sum(0)
    self._outer += centred.T @ centred
    self.count += len(features)
    if self._num_kept < self.keep:
      rows = features[:self.keep - self._num_kept].astype(np.float32)
      self._kept.append(rows)
      self._num_kept += len(rows)

  @property
  def mean(self) -> np.ndarray:
    self._check(1)
    return self._shift + self._sum / self.count

  @property
  def covariance(self) -> np.ndarray:
    """Unbiased (ddof=1), as `np.cov(features, rowvar=False)` in pytorch-fid."""
    self._check(2)
    centred_mean = self._sum / self.count
    return (self._outer - self.count * np.outer(centred_mean, centred_mean)) / (self.count - 1)

  @property
  def features(self) -> np.ndarray:
    """The kept feature rows (at most `keep`)."""
    if not self._kept:
      return np.zeros((0, 0 if self._shift is None else len(self._shift)), np.float32)
    return np.concatenate(self._kept)

  def _check(self, minimum: int) -> None:
    if self.count < minimum:
      raise UserError(f'feature statistics need at least {minimum} images, got {self.count}')

  def to_reference(self, **meta) -> 'ReferenceStats':
    return ReferenceStats(mean=self.mean, covariance=self.covariance, count=self.count,
                          features=self.features, feature_space=self.feature_space, meta=meta)


@dataclasses.dataclass
class ReferenceStats:
  """Fixed statistics of one image set (usually the real data), storable as .npz."""
  mean: np.ndarray
  covariance: np.ndarray
  count: int
  features: np.ndarray  # A sample of feature rows, for KID.
  feature_space: str
  meta: dict = dataclasses.field(default_factory=dict)

  def save(self, path) -> None:
    np.savez(path, mean=self.mean, covariance=self.covariance, count=self.count,
             features=self.features, feature_space=self.feature_space,
             meta=np.array(repr(sorted(self.meta.items()))))

  @classmethod
  def load(cls, path) -> 'ReferenceStats':
    with np.load(path) as data:
      return cls(mean=data['mean'], covariance=data['covariance'], count=int(data['count']),
                 features=data['features'], feature_space=str(data['feature_space']),
                 meta={'stored': str(data['meta'])} if 'meta' in data.files else {})


def frechet_distance(mean1, cov1, mean2, cov2, eps: float = 1e-6) -> float:
  """||μ1 − μ2||² + Tr(Σ1 + Σ2 − 2 (Σ1 Σ2)^½), as pytorch-fid's `calculate_frechet_distance`.

  When Σ1 Σ2 is singular (fewer images than dimensions) its square root can come out
  non-finite; then `eps` is added to both diagonals. Small imaginary parts from round-off are
  dropped; large ones (a sign of a broken covariance) raise.
  """
  mean1, mean2 = np.atleast_1d(np.asarray(mean1, np.float64)), np.atleast_1d(
      np.asarray(mean2, np.float64))
  cov1, cov2 = np.atleast_2d(np.asarray(cov1, np.float64)), np.atleast_2d(
      np.asarray(cov2, np.float64))
  if mean1.shape != mean2.shape or cov1.shape != cov2.shape:
    raise ValueError(f'statistics differ in shape: means {mean1.shape} vs {mean2.shape}, '
                     f'covariances {cov1.shape} vs {cov2.shape}')
  diff = mean1 - mean2
  with warnings.catch_warnings():
    # pytorch-fid calls sqrtm(disp=False): no warning for a singular product, only the check.
    warnings.simplefilter('ignore', scipy.linalg.LinAlgWarning)
    covmean = scipy.linalg.sqrtm(cov1 @ cov2)
    if not np.isfinite(covmean).all():
      log.warning('FID: singular product of covariances; adding %g to their diagonals', eps)
      offset = np.eye(cov1.shape[0]) * eps
      covmean = scipy.linalg.sqrtm((cov1 + offset) @ (cov2 + offset))
  if np.iscomplexobj(covmean):
    if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
      raise ValueError(f'FID: imaginary component {np.max(np.abs(covmean.imag)):.3g} in the '
                       'square root of the covariance product')
    covmean = covmean.real
  return float(diff @ diff + np.trace(cov1) + np.trace(cov2) - 2 * np.trace(covmean))


def polynomial_mmd2_unbiased(x: np.ndarray, y: np.ndarray, degree: int = 3,
                             coef0: float = 1.0) -> float:
  """Unbiased MMD² between samples x [m, d] and y [n, d] with k(a, b) = (a·b/d + coef0)^degree."""
  x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
  m, n, dim = len(x), len(y), x.shape[1]
  if m < 2 or n < 2:
    raise UserError(f'KID needs at least 2 samples per set, got {m} and {n}')
  kxx = (x @ x.T / dim + coef0)**degree
  kyy = (y @ y.T / dim + coef0)**degree
  kxy = (x @ y.T / dim + coef0)**degree
  # Unbiased: the diagonals k(x_i, x_i) are left out of the within-set means.
  return float((kxx.sum() - np.trace(kxx)) / (m * (m - 1))
               + (kyy.sum() - np.trace(kyy)) / (n * (n - 1)) - 2 * kxy.mean())


def kernel_inception_distance(features1, features2, num_subsets: int = 100,
                              subset_size: int = 1000, seed: int = 0) -> tuple[float, float]:
  """KID: (mean, std) of the unbiased polynomial MMD² over `num_subsets` random subsets.

  Each subset draws min(subset_size, len(features1), len(features2)) rows of each set without
  replacement, as torch-fidelity does.
  """
  features1, features2 = np.asarray(features1), np.asarray(features2)
  size = min(subset_size, len(features1), len(features2))
  rng = np.random.default_rng(seed)
  values = [polynomial_mmd2_unbiased(features1[rng.choice(len(features1), size, replace=False)],
                                     features2[rng.choice(len(features2), size, replace=False)])
            for _ in range(num_subsets)]
  return float(np.mean(values)), float(np.std(values))


def compare(samples: FeatureStats | ReferenceStats, reference: ReferenceStats, *,
            kid_subsets: int = 100, kid_subset_size: int = 1000, seed: int = 0
           ) -> dict[str, Any]:
  """FID and KID of `samples` against `reference`, with the feature space they were computed in.

  Returns {'fid', 'kid', 'kid_std', 'feature_space', 'num_samples', 'num_reference'}; KID is
  None when either side kept fewer than 2 feature rows.
  """
  if samples.feature_space != reference.feature_space:
    raise UserError(f'cannot compare statistics from different feature spaces: '
                    f'{samples.feature_space!r} vs reference {reference.feature_space!r}')
  fid = frechet_distance(samples.mean, samples.covariance, reference.mean, reference.covariance)
  kid = kid_std = None
  if len(samples.features) >= 2 and len(reference.features) >= 2 and kid_subsets:
    kid, kid_std = kernel_inception_distance(samples.features, reference.features, kid_subsets,
                                             kid_subset_size, seed)
  return {'fid': fid, 'kid': kid, 'kid_std': kid_std, 'feature_space': reference.feature_space,
          'num_samples': samples.count, 'num_reference': reference.count}


def stats_of(features: np.ndarray, feature_space: str, keep: Optional[int] = None) -> FeatureStats:
  """FeatureStats of a whole [N, D] array at once (keeps all rows for KID by default)."""
  stats = FeatureStats(feature_space, keep=len(features) if keep is None else keep)
  stats.update(features)
  return stats
