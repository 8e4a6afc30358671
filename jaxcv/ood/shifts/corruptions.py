"""CIFAR-10-C-style corruptions (Hendrycks & Dietterich 2019, `make_cifar_c.py`), severities 1-5
with the CIFAR constants of that script. Gaussian noise, defocus blur and contrast are written in
jnp (they jit and batch); JPEG has no codec in JAX, so it runs through Pillow on the host, as the
original does.

Every function maps uint8 NHWC images to uint8 images, truncated like CIFAR-10-C's `np.uint8`
cast. Gaussian noise is deterministic per `seed` (jax.random, not numpy's global state).
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from jaxcv.data.dataset import ArrayDataset
from jaxcv.errors import ConfigError

# make_cifar_c.py's per-severity constants (CIFAR-10 versions, not ImageNet-C's).
GAUSSIAN_NOISE_STD = (0.04, 0.06, 0.08, 0.09, 0.10)
DEFOCUS_RADIUS_AND_ALIAS_BLUR = ((0.3, 0.4), (0.4, 0.5), (0.5, 0.6), (1.0, 0.2), (1.5, 0.1))
CONTRAST_FACTOR = (0.75, 0.5, 0.4, 0.3, 0.15)
JPEG_QUALITY = (80, 65, 58, 50, 40)


def _constant(table, severity: int):
  if severity not in range(1, len(table) + 1):
    raise ConfigError(f'corruption severity must be in 1..{len(table)}, got {severity}')
  return table[severity - 1]


def _to_uint8(x: jax.Array) -> jax.Array:
  # np.uint8(clip(x, 0, 1) * 255) in make_cifar_c.py: truncation, not rounding.
  return jnp.floor(jnp.clip(x, 0.0, 1.0) * 255.0).astype(jnp.uint8)


@jax.jit
def _noisy(images, rng, std):
  x = images.astype(jnp.float32) / 255.0
  return _to_uint8(x + std * jax.random.normal(rng, x.shape, jnp.float32))


def gaussian_noise(images: np.ndarray, severity: int, seed: int = 0) -> np.ndarray:
  """x + N(0, c^2) per pixel and channel, clipped to [0, 1]."""
  std = _constant(GAUSSIAN_NOISE_STD, severity)
  return np.asarray(_noisy(jnp.asarray(images), jax.random.PRNGKey(seed), std))


def _gaussian_kernel_3(sigma: float) -> np.ndarray:
  """OpenCV's 3-tap Gaussian (cv2.getGaussianKernel(3, sigma)), normalised."""
  taps = np.exp(-np.arange(-1, 2) ** 2 / (2 * sigma**2))
  return taps / taps.sum()


def defocus_kernel(radius: float, alias_blur: float) -> np.ndarray:
  """make_cifar_c.py's `disk`: a 17x17 aliased disk of `radius`, normalised, then smoothed by
  cv2.GaussianBlur(ksize=3, sigma=alias_blur) with OpenCV's default reflect-101 border."""
  grid = np.arange(-8, 9)
  xx, yy = np.meshgrid(grid, grid)
  disk = (xx**2 + yy**2 <= radius**2).astype(np.float64)
  disk /= disk.sum()
  taps = _gaussian_kernel_3(alias_blur)
  padded = np.pad(disk, 1, mode='reflect')  # numpy 'reflect' is OpenCV's BORDER_REFLECT_101.
  rows = sum(taps[i] * padded[i:i + 17, :] for i in range(3))
  return sum(taps[j] * rows[:, j:j + 17] for j in range(3))


@jax.jit
def _filtered(images, kernel):
  """cv2.filter2D of every channel with `kernel` (correlation, reflect-101 border)."""
  x = images.astype(jnp.float32) / 255.0
  k = kernel.shape[0] // 2
  x = jnp.pad(x, ((0, 0), (k, k), (k, k), (0, 0)), mode='reflect')
  channels = x.shape[-1]
  weights = jnp.tile(kernel[:, :, None, None], (1, 1, 1, channels)).astype(jnp.float32)
  out = jax.lax.conv_general_dilated(x, weights, (1, 1), 'VALID',
                                     dimension_numbers=('NHWC', 'HWIO', 'NHWC'),
                                     feature_group_count=channels,
                                     precision=jax.lax.Precision.HIGHEST)
  return _to_uint8(out)


def defocus_blur(images: np.ndarray, severity: int, seed: int = 0) -> np.ndarray:
  """Every channel convolved with the anti-aliased disk of make_cifar_c.py."""
  del seed  # Deterministic.
  kernel = defocus_kernel(*_constant(DEFOCUS_RADIUS_AND_ALIAS_BLUR, severity))
  if min(images.shape[1:3]) <= 8:
    raise ConfigError(f'defocus_blur needs images larger than 8x8 (its kernel is 17x17), got '
                      f'{images.shape[1:3]}')
  return np.asarray(_filtered(jnp.asarray(images), jnp.asarray(kernel)))


@jax.jit
def _contrasted(images, factor):
  x = images.astype(jnp.float32) / 255.0
  means = jnp.mean(x, axis=(1, 2), keepdims=True)  # Per image and channel, as the original.
  return _to_uint8((x - means) * factor + means)


def contrast(images: np.ndarray, severity: int, seed: int = 0) -> np.ndarray:
  """(x - mean) * c + mean, the mean per image and channel."""
  del seed
  return np.asarray(_contrasted(jnp.asarray(images), _constant(CONTRAST_FACTOR, severity)))


def jpeg(images: np.ndarray, severity: int, seed: int = 0) -> np.ndarray:
  """Pillow JPEG encode + decode at make_cifar_c.py's quality for the severity (the data
  layer's codec, also used for the ISS-J defence)."""
  from jaxcv.unlearnable.datasets import jpeg_compressed  # pylint: disable=import-outside-toplevel
  del seed
  quality = _constant(JPEG_QUALITY, severity)
  labels = np.zeros(len(images), np.int32)
  return jpeg_compressed(ArrayDataset(images, labels, ('',)), quality).images


CORRUPTIONS: dict[str, Callable[..., np.ndarray]] = {
    'gaussian_noise': gaussian_noise,
    'defocus_blur': defocus_blur,
    'contrast': contrast,
    'jpeg': jpeg,
}


def corrupt(images: np.ndarray, kind: str, severity: int, seed: int = 0) -> np.ndarray:
  """uint8 NHWC images corrupted by `kind` at `severity` (1-5)."""
  if kind not in CORRUPTIONS:
    raise ConfigError(f'unknown corruption {kind!r}; known: {", ".join(CORRUPTIONS)}')
  images = np.asarray(images)
  if images.dtype != np.uint8 or images.ndim != 4:
    raise ConfigError(f'corruptions take uint8 NHWC images, got {images.dtype} {images.shape}')
  return CORRUPTIONS[kind](images, severity, seed)
