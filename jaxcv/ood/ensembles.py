"""Ensembles of OOD detector scores: BROAD's Gaussian mixture and the z-score baselines.

Each ensemble reads the joint vector s(x) = [s_1(x), ..., s_k(x)] of k detectors' ID-ness scores
(a [N, k] matrix, columns in a fixed detector order), is fitted on ID scores only, from a split
that was not used to fit the detectors themselves, and returns ID-ness (higher = more ID).

  gmm      BROAD's ensemble (OpenOOD-CADet `gmm_ens_postprocessor.py`): sklearn GaussianMixture at
           its defaults (full covariance, k-means init, reg_covar 1e-6, 100 EM iterations, one
           init) on the ID scores; score = the mixture log-likelihood (`score_samples`). The
           number of components is chosen by BIC on the same ID scores among `components`
           (the paper's K is not recovered). Scores are z-scored with ID statistics first
           (jaxcv's choice: it conditions EM; a full-covariance GMM is otherwise affine-invariant).
  mean_z   the mean of the k z-scores (the reviewers' averaging baseline).
  max_z    the largest OOD-ness z-score (-z) over the k detectors, negated back to ID-ness: the
           most alarmed detector decides (the reviewers' max baseline); equal to min_k z_k.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from jaxcv.errors import ConfigError

GMM_COMPONENTS = (1, 2, 3, 5, 10)


def _matrix(scores) -> np.ndarray:
  x = np.asarray(scores, np.float64)
  if x.ndim != 2 or not len(x):
    raise ConfigError(f'an ensemble takes a non-empty [N, detectors] score matrix, got {x.shape}')
  if not np.all(np.isfinite(x)):
    raise ConfigError('an ensemble got non-finite detector scores')
  return x


class ScoreEnsemble:
  """z-scores every column with the ID fitting set's mean and standard deviation."""
  name = ''

  def fit(self, id_scores) -> 'ScoreEnsemble':
    x = _matrix(id_scores)
    self.mean = x.mean(0)
    std = x.std(0)
    self.std = np.where(std > 0, std, 1.0)  # A constant score stays constant (z = 0).
    self._fit(self.z(x))
    return self

  def z(self, scores) -> np.ndarray:
    x = _matrix(scores)
    if x.shape[1] != len(self.mean):
      raise ConfigError(f'{self.name}: fitted on {len(self.mean)} detectors, got {x.shape[1]}')
    return (x - self.mean) / self.std

  def score(self, scores) -> np.ndarray:
    """float64 [N] ID-ness of the [N, k] detector scores."""
    return self._score(self.z(scores))

  def _fit(self, z: np.ndarray) -> None:
    del z

  def _score(self, z: np.ndarray) -> np.ndarray:
    raise NotImplementedError


class MeanZ(ScoreEnsemble):
  name = 'mean_z'

  def _score(self, z):
    return z.mean(1)


class MaxZ(ScoreEnsemble):
  name = 'max_z'

  def _score(self, z):
    return -np.max(-z, axis=1)


class GMM(ScoreEnsemble):
  """The BROAD Gaussian-mixture ensemble (module docstring). After fit: `n_components`, `bic`
  (K -> BIC on the ID fitting scores) and `model` (the sklearn GaussianMixture)."""
  name = 'gmm'

  def __init__(self, components: Sequence[int] = GMM_COMPONENTS, seed: int = 0):
    components = tuple(int(k) for k in components)
    if not components or min(components) < 1:
      raise ConfigError(f'gmm components must be positive ints, got {components}')
    self.components = components
    self.seed = seed

  def _fit(self, z):
    from sklearn.mixture import GaussianMixture  # pylint: disable=import-outside-toplevel
    usable = [k for k in self.components if k <= len(z)]
    if not usable:
      raise ConfigError(f'gmm: {len(z)} fitting examples are fewer than any of {self.components} '
                        'components')
    models = {k: GaussianMixture(n_components=k, random_state=self.seed).fit(z) for k in usable}
    self.bic = {k: float(m.bic(z)) for k, m in models.items()}
    self.n_components = min(self.bic, key=self.bic.get)
    self.model = models[self.n_components]

  def _score(self, z):
    return self.model.score_samples(z)


ENSEMBLES = {'gmm': GMM, 'mean_z': MeanZ, 'max_z': MaxZ}


def build_ensembles(names: Sequence[str] = tuple(ENSEMBLES), seed: int = 0,
                    gmm_components: Sequence[int] = GMM_COMPONENTS) -> list[ScoreEnsemble]:
  unknown = [n for n in names if n not in ENSEMBLES]
  if unknown:
    raise ConfigError(f'unknown ensembles {unknown}; known: {", ".join(ENSEMBLES)}')
  return [GMM(gmm_components, seed) if n == 'gmm' else ENSEMBLES[n]() for n in names]
