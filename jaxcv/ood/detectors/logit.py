"""Detectors that read only the logits f: MSP, MaxLogit, Energy, Entropy, DOCTOR-alpha, the
logit norm and KL-matching. p = softmax(f); every score is ID-ness (higher = more in-distribution)."""

from __future__ import annotations

import logging

import numpy as np
from scipy import special

from jaxcv.errors import ConfigError
from jaxcv.ood.detectors.base import BaseDetector, register
from jaxcv.ood.featureset import FeatureSet

log = logging.getLogger(__name__)


def _logits(fs: FeatureSet) -> np.ndarray:
  return np.asarray(fs.logits, np.float64)


@register('msp')
class MSP(BaseDetector):
  """Maximum softmax probability max_c p_c (Hendrycks & Gimpel 2017). Higher = ID."""

  def _score(self, fs):
    return special.softmax(_logits(fs), axis=-1).max(-1)


@register('maxlogit')
class MaxLogit(BaseDetector):
  """Maximum logit max_c f_c (MLS, Hendrycks et al. 2022). Higher = ID."""

  def _score(self, fs):
    return _logits(fs).max(-1)


@register('energy')
class Energy(BaseDetector):
  """Negative free energy T * logsumexp(f / T) (EBO, Liu et al. 2020; OpenOOD T = 1).
  Higher = ID."""

  def __init__(self, temperature: float = 1.0):
    if not float(temperature) > 0:
      raise ConfigError(f'energy temperature must be > 0, got {temperature}')
    self.temperature = float(temperature)

  def _score(self, fs):
    t = self.temperature
    return t * special.logsumexp(_logits(fs) / t, axis=-1)


@register('entropy')
class Entropy(BaseDetector):
  """Negated entropy of p, sum_c p_c log p_c (pytorch-ood's Entropy with the jaxcv sign).
  Higher = ID (a peaked softmax)."""

  def _score(self, fs):
    log_p = special.log_softmax(_logits(fs), axis=-1)
    return np.sum(np.exp(log_p) * log_p, axis=-1)


@register('doctor')
class Doctor(BaseDetector):
  """DOCTOR-alpha (Granese et al. 2021) as in the BROAD fork: g = sum_c p_c^2 and the fork's
  anomaly score (1 - g) / g, negated here: returns -(1 - g) / g. Higher = ID."""

  def _score(self, fs):
    g = np.sum(special.softmax(_logits(fs), axis=-1) ** 2, axis=-1)
    return -(1 - g) / g


@register('logit_norm')
class LogitNorm(BaseDetector):
  """The L2 norm of the logits ||f||_2, one of the scores the BROAD fork dumps. Higher = ID."""

  def _score(self, fs):
    return np.linalg.norm(_logits(fs), axis=-1)


@register('klm')
class KLMatching(BaseDetector):
  """KL-matching (Hendrycks et al. 2022) as in OpenOOD: templates d_c = mean softmax of the
  ID-val examples predicted as class c; score = -min_c KL(p || d_c). Higher = ID.

  Fitted on ID-val (`fit_split = 'val'`), as OpenOOD does. Classes no fitting example is
  predicted as have no template and are left out of the min.
  """
  fit_requires = frozenset({'logits'})
  fit_split = 'val'

  def _fit(self, train):
    p = special.softmax(_logits(train), axis=-1)
    pred = p.argmax(-1)
    present = np.unique(pred)
    if len(present) < p.shape[1]:
      log.warning('klm: %d of %d classes are never predicted on %r; they get no template',
                  p.shape[1] - len(present), p.shape[1], train.name)
    self.templates = np.stack([p[pred == c].mean(0) for c in present])  # [K, C]

  def _score(self, fs):
    log_p = special.log_softmax(_logits(fs), axis=-1)
    p = np.exp(log_p)
    # KL(p || d) = sum_j p_j (log p_j - log d_j) with 0 log 0 = 0, as OpenOOD's np.where. A
    # template entry that underflowed to 0 counts as the smallest float64 (finite, not inf), so
    # the cross term is one [N, C] x [C, K] product.
    log_d = np.log(np.maximum(self.templates, np.finfo(np.float64).tiny))
    self_term = np.sum(np.where(p > 0, p * log_p, 0), axis=-1)
    return -np.min(self_term[:, None] - p @ log_d.T, axis=-1)
