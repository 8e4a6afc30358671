"""CADet as an OOD detector of the detector registry: `build_detector('cadet(n_views=25)')`.

It scores images, not a FeatureSet: `fit_images` embeds random views of ID calibration images
(split into X_val1 and X_val2, score.py) and `score_images` returns ID-ness (higher = more
in-distribution, jaxcv's sign), so the OOD metrics (jaxcv/ood/metrics.py) apply unchanged.

  det = build_detector('cadet(term="cadet", n_views=10, min_scale=0.2)')
  det.fit_images(embed, variables, id_val_images, rng)
  scores = det.score_images(embed, variables, images, rng)     # term's ID-ness
  terms = det.score_terms(embed, variables, images, rng)       # m_in, m_out and cadet at once
  p = det.p_values(scores)                                     # calibrated on X_val2
"""

from __future__ import annotations

from typing import Optional

import jax
import numpy as np

from jaxcv.errors import ConfigError
from jaxcv.ood.detectors.base import BaseDetector, register
from jaxcv.cadet import score as score_lib


@register('cadet')
class CADet(BaseDetector):
  """CADet (arXiv 2210.01742): term 'm_in' (intra-sample view similarity), 'm_out' (similarity
  to X_val1's views) or 'cadet' (m_in + gamma * m_out). ID-ness: higher = more ID.

  n_views: random views per image (n_t); min_scale: the crop's lower area bound;
  val1_fraction: the share of the calibration images used as X_val1 (the rest is X_val2).
  """
  requires = frozenset({'images'})
  fit_requires = frozenset({'images'})
  fit_split = 'val'

  def __init__(self, term: str = 'cadet', n_views: int = 10, min_scale: float = 0.2,
               val1_fraction: float = 0.5, batch_size: int = 100):
    super().__init__()
    if term not in score_lib.TERMS:
      raise ConfigError(f'cadet: term must be one of {score_lib.TERMS}, got {term!r}')
    if not 0 < val1_fraction < 1:
      raise ConfigError(f'cadet: val1_fraction must be in (0, 1), got {val1_fraction}')
    self.term, self.n_views, self.min_scale = term, n_views, min_scale
    self.val1_fraction, self.batch_size = val1_fraction, batch_size
    self.calibration: Optional[score_lib.Calibration] = None
    self.image_shape = None
    self._jitted: dict = {}

  def stats(self, embed, variables, images, rng) -> score_lib.ViewStats:
    return score_lib.view_stats(embed, variables, images, rng, n_views=self.n_views,
                                min_scale=self.min_scale, image_shape=self.image_shape,
                                batch_size=self.batch_size, cache=self._jitted)

  def fit_images(self, embed, variables, images: np.ndarray, rng: jax.Array,
                 image_shape=None) -> 'CADet':
    """Calibrates on ID images: the first val1_fraction are X_val1, the rest X_val2.
    image_shape: the encoder's input (H, W, C); other images are resized to it."""
    self.image_shape = tuple(image_shape) if image_shape else tuple(images.shape[1:])
    cut = int(round(self.val1_fraction * len(images)))
    if cut < 1 or len(images) - cut < 2:
      raise ConfigError(f'cadet needs >= 3 calibration images, got {len(images)}')
    val1_rng, val2_rng = jax.random.split(rng)
    self.calibration = score_lib.calibrate(self.stats(embed, variables, images[:cut], val1_rng),
                                           self.stats(embed, variables, images[cut:], val2_rng))
    self._fitted = True
    return self

  def _check_fitted(self) -> None:
    if self.calibration is None:
      raise RuntimeError(f'{self.spec}: call fit_images() on ID images before scoring')

  def score_terms(self, embed, variables, images, rng) -> dict[str, np.ndarray]:
    """Every term's ID-ness scores from one pass of views."""
    self._check_fitted()
    return self.calibration.terms(self.stats(embed, variables, images, rng))

  def score_images(self, embed, variables, images, rng) -> np.ndarray:
    return self.score_terms(embed, variables, images, rng)[self.term]

  def p_values(self, scores: np.ndarray, term: Optional[str] = None) -> np.ndarray:
    self._check_fitted()
    return self.calibration.p_values(term or self.term, scores)

  def fit(self, train):
    raise ConfigError(f'{self.spec} embeds views of images: call fit_images(embed, variables, '
                      'images, rng), not fit(FeatureSet)')

  def score(self, fs):
    raise ConfigError(f'{self.spec} embeds views of images: call score_images(embed, '
                      'variables, images, rng), not score(FeatureSet)')
