"""EPD, the edge-pixel detector of convolution-based unlearnable examples (COIN's AAAI version).

CUDA-style poisons convolve with zero padding, which darkens the border pixels relative to the
interior before the image is rescaled by its maximum; bounded poisons (a small additive
perturbation of a clean image) leave the border as it was. EPD reads only the border: the sum
of the pixel values along each of the 4 edges, per RGB channel (a 12-d feature), and a linear
SVM on it, with C_p and a decision threshold θ (as relayed in the spec; docs/coin.md lists what
was left open and what jaxcv picked). scikit-learn's LinearSVC is the SVM: a solved problem.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from jaxcv.errors import ConfigError

EDGES = ('top', 'bottom', 'left', 'right')


def edge_features(images: np.ndarray) -> np.ndarray:
  """[N, H, W, C] images (uint8, or float in [0, 1]) -> [N, 4C] edge sums in [0, 1] pixel units,
  ordered top, bottom, left, right, each over the channels."""
  images = np.asarray(images)
  if images.ndim != 4:
    raise ConfigError(f'EPD needs [N, H, W, C] images, got shape {images.shape}')
  x = images.astype(np.float64) / (255.0 if images.dtype == np.uint8 else 1.0)
  edges = (x[:, 0], x[:, -1], x[:, :, 0], x[:, :, -1])  # Each [N, length, C].
  return np.concatenate([edge.sum(axis=1) for edge in edges], axis=1)


@dataclasses.dataclass
class EdgePixelDetector:
  """Linear SVM on `edge_features`; flags an image as convolution-poisoned when its decision
  value exceeds `threshold` (θ). `c` is the SVM's C_p. Features are standardised first."""
  c: float = 1.0
  threshold: float = 0.0
  model: Any = None

  def fit(self, images: np.ndarray, is_convolution_poison: np.ndarray) -> 'EdgePixelDetector':
    from sklearn.pipeline import make_pipeline  # pylint: disable=g-import-not-at-top
    from sklearn.preprocessing import StandardScaler  # pylint: disable=g-import-not-at-top
    from sklearn.svm import LinearSVC  # pylint: disable=g-import-not-at-top
    targets = np.asarray(is_convolution_poison).astype(bool)
    if targets.all() or not targets.any():
      raise ConfigError('EPD needs both convolution-poisoned and other images to fit')
    self.model = make_pipeline(StandardScaler(), LinearSVC(C=self.c, max_iter=20_000))
    self.model.fit(edge_features(images), targets)
    return self

  def decision(self, images: np.ndarray) -> np.ndarray:
    if self.model is None:
      raise ConfigError('EdgePixelDetector.fit must run before it can detect')
    return self.model.decision_function(edge_features(images))

  def detect(self, images: np.ndarray) -> np.ndarray:
    """Boolean [N]: True where the image looks convolution-poisoned."""
    return self.decision(images) > self.threshold

  def evaluate(self, images: np.ndarray, is_convolution_poison: np.ndarray) -> dict:
    """Accuracy at θ and the threshold-free ROC AUC (the paper reports both)."""
    from sklearn.metrics import roc_auc_score  # pylint: disable=g-import-not-at-top
    targets = np.asarray(is_convolution_poison).astype(bool)
    scores = self.decision(images)
    return {'accuracy': float(np.mean((scores > self.threshold) == targets)),
            'auc': float(roc_auc_score(targets, scores))}
