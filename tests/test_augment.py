"""On-device augmentation: shapes, invariants, statistics and determinism."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxcv.data import augment
from jaxcv.errors import ConfigError


def _images(n=64, size=8):
  rng = np.random.default_rng(0)
  return jnp.asarray(rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8))


def test_crop_is_a_window_of_the_padded_image():
  images = augment.to_float(_images())
  out = augment.random_crop(jax.random.key(0), images, padding=2)
  padded = np.pad(np.asarray(images), ((0, 0), (2, 2), (2, 2), (0, 0)))
  for i in range(len(images)):
    windows = [padded[i, y:y + 8, x:x + 8] for y in range(5) for x in range(5)]
    assert any(np.array_equal(np.asarray(out[i]), w) for w in windows)
  # Not every sample gets the same offset.
  assert len({np.asarray(out[i]).tobytes() == np.asarray(images[i]).tobytes()
              for i in range(len(images))}) == 2


def test_crop_without_padding_is_identity():
  images = augment.to_float(_images())
  np.testing.assert_array_equal(augment.random_crop(jax.random.key(1), images, padding=0), images)


def test_flip_rate_and_content():
  images = augment.to_float(_images(n=2000, size=4))
  out = augment.random_flip(jax.random.key(0), images)
  flipped = np.all(np.asarray(out) == np.asarray(images)[:, :, ::-1], axis=(1, 2, 3))
  same = np.all(np.asarray(out) == np.asarray(images), axis=(1, 2, 3))
  assert np.all(flipped | same)
  assert 0.45 < flipped.mean() < 0.55


def test_cutout_zeroes_at_most_a_square():
  images = jnp.ones((256, 16, 16, 3))
  out = np.asarray(augment.cutout(jax.random.key(0), images, size=4))
  zeroed = (out[..., 0] == 0).sum(axis=(1, 2))
  assert zeroed.max() == 16 and zeroed.min() >= 4  # A 4x4 square, clipped at the border.
  assert np.all((out == 0) | (out == 1))


def test_pipeline_is_deterministic_per_rng_and_outputs_floats():
  pipeline = augment.build('crop(padding=4)|flip|cutout(size=3)')
  images = _images()
  a, b = pipeline(jax.random.key(3), images), pipeline(jax.random.key(3), images)
  c = pipeline(jax.random.key(4), images)
  np.testing.assert_array_equal(a, b)
  assert not np.array_equal(a, c)
  assert a.dtype == jnp.float32 and float(a.max()) <= 1.0 and a.shape == images.shape


def test_parse_errors_name_the_op():
  with pytest.raises(ConfigError, match='unknown augmentation op'):
    augment.parse('crop|rotate')
  with pytest.raises(ConfigError, match='crop\\(4\\)'):
    augment.parse('crop(4)')
  assert augment.parse('') == []
