"""EPD (COIN's edge-pixel detector): its 12-d edge feature, and that a linear SVM on it tells
CUDA-poisoned images from bounded-noise ones on held-out images of the shipped CIFAR-10 sample."""

import numpy as np
import pytest

from jaxcv.data import load_dataset
from jaxcv.errors import ConfigError
from jaxcv.unlearnable import convolution
from jaxcv.unlearnable.detect import EdgePixelDetector, edge_features


def test_edge_features_are_the_per_channel_sums_of_the_four_edges():
  image = np.zeros((1, 4, 5, 3), np.uint8)
  image[0, 0, :, 0] = 255     # Top row, red: 5 pixels, corners included.
  image[0, :, -1, 2] = 51     # Right column, blue: 4 pixels of 0.2.
  features = edge_features(image).reshape(4, 3)  # top, bottom, left, right x RGB.
  np.testing.assert_allclose(features, [[5, 0, 0.2], [0, 0, 0.2], [1, 0, 0], [1, 0, 0.8]])
  np.testing.assert_allclose(edge_features(image / 255.0), edge_features(image))
  with pytest.raises(ConfigError, match='N, H, W, C'):
    edge_features(image[0])


def test_epd_separates_cuda_from_bounded_poisons_on_held_out_images():
  data = load_dataset('cifar10_sample', 'train', '', None)
  images, labels = np.asarray(data.images[:1600]), np.asarray(data.labels[:1600])
  kernels = np.asarray(convolution.class_kernels(10, 'cuda', 0.3, 0))
  cuda = convolution.poison(images[:800], labels[:800], kernels, chunk=800)
  noise = np.random.default_rng(0).uniform(-8, 8, images[800:].shape)  # L-inf 8/255.
  bounded = np.clip(images[800:] + noise, 0, 255).astype(np.uint8)
  x = np.concatenate([cuda, bounded])
  y = np.r_[np.ones(800, bool), np.zeros(800, bool)]
  train = np.r_[0:600, 800:1400]  # Held-out: the last 200 images of each kind.
  test = np.r_[600:800, 1400:1600]
  detector = EdgePixelDetector(c=1.0).fit(x[train], y[train])
  scores = detector.evaluate(x[test], y[test])
  assert scores['accuracy'] > 0.85 and scores['auc'] > 0.9, scores  # 0.93 and 0.97 measured.
  # The threshold trades one error for the other: a high θ flags nothing.
  assert not EdgePixelDetector(threshold=1e9, model=detector.model).detect(x[test]).any()
  with pytest.raises(ConfigError, match='both'):
    EdgePixelDetector().fit(x[:10], y[:10])
