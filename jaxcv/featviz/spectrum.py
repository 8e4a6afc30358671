"""Colour decorrelation and Fourier-spectrum utilities for feature visualisation.

- `COLOR_CORRELATION` is Lucid's square root of the ImageNet colour covariance, normalised by its
  largest column norm, written (as Xplique's `recorrelate_colors` uses it) so that
  `rgb = decorrelated @ COLOR_CORRELATION` per pixel.
- `compute_magnitude` estimates MACO's fixed magnitude: the mean |rfft2| of images taken to the
  decorrelated colour basis (`rgb @ inv(C)`), so it is consistent with the recorrelation step of
  the MACO image. Xplique's `init_maco_buffer` averages |rfft2| of the raw images; its shipped
  ImageNet file is named `spectrum_decorrelated.npy`.
- `radial_power_spectrum` bins |fft2|² by radial frequency, to compare visualisations with data.
"""

from __future__ import annotations

import os
from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np

from jaxcv.errors import ConfigError

COLOR_CORRELATION = np.array([[0.56282854, 0.58447580, 0.58447580],
                              [0.19482528, 0.00000000, -0.19482528],
                              [0.04329747, -0.10823667, 0.06494142]], np.float32)
COLOR_DECORRELATION = np.linalg.inv(COLOR_CORRELATION).astype(np.float32)


def recorrelate(x: jax.Array) -> jax.Array:
  """Decorrelated-basis pixels [..., 3] to RGB-correlated ones."""
  return x @ jnp.asarray(COLOR_CORRELATION)


def decorrelate(x: jax.Array) -> jax.Array:
  """RGB pixels [..., 3] to the decorrelated basis (inverse of `recorrelate`)."""
  return x @ jnp.asarray(COLOR_DECORRELATION)


def rfft2_freqs(height: int, width: int) -> np.ndarray:
  """Radial frequency (cycles per pixel) of each rfft2 coefficient, [H, W//2+1], as Lucid's
  `rfft2d_freqs`."""
  fy = np.fft.fftfreq(height)[:, None]
  fx = np.fft.rfftfreq(width)[None, :]
  return np.sqrt(fx * fx + fy * fy)


def spectrum_shape(height: int, width: int, channels: int = 3) -> tuple[int, int, int]:
  return (channels, height, width // 2 + 1)


def compute_magnitude(images, batch_size: int = 2000) -> np.ndarray:
  """Mean |rfft2| [3, H, W//2+1] of images (uint8 or float [0, 1], NHWC) in the decorrelated
  colour basis."""
  images = np.asarray(images)
  if images.ndim != 4 or images.shape[-1] != 3:
    raise ConfigError(f'compute_magnitude needs RGB images [N, H, W, 3], got {images.shape}')

  scale = 1 / 255.0 if images.dtype == np.uint8 else 1.0

  @jax.jit
  def batch_sum(batch):
    x = jnp.moveaxis(decorrelate(batch.astype(jnp.float32) * scale), -1, 1)  # [N, 3, H, W]
    return jnp.sum(jnp.abs(jnp.fft.rfft2(x)), axis=0)

  total = 0.0
  for start in range(0, len(images), batch_size):
    total = total + np.asarray(batch_sum(images[start:start + batch_size]), np.float64)
  return (total / len(images)).astype(np.float32)


def resize_magnitude(magnitude: np.ndarray, height: int, width: int) -> np.ndarray:
  """Bilinear resize of a [C, h, w//2+1] magnitude to [C, height, width//2+1], as Xplique
  resizes its stored spectrum to the canvas."""
  magnitude = np.asarray(magnitude, np.float32)
  target = spectrum_shape(height, width, magnitude.shape[0])
  if magnitude.shape == target:
    return magnitude
  return np.asarray(jax.image.resize(jnp.asarray(magnitude), target, 'bilinear'))


def save_magnitude(path: str | os.PathLike, magnitude: np.ndarray) -> None:
  np.save(path, np.asarray(magnitude, np.float32))


def load_magnitude(path: str | os.PathLike) -> np.ndarray:
  """A stored magnitude spectrum [3, H, W//2+1] (.npy), e.g. Xplique's spectrum_decorrelated.npy."""
  if not os.path.isfile(path):
    raise ConfigError(f'magnitude spectrum file {path} not found (expected a .npy array of shape '
                      '[3, H, W//2+1], e.g. written by jaxcv.featviz.spectrum.save_magnitude)')
  magnitude = np.load(path)
  if magnitude.ndim != 3 or magnitude.shape[0] != 3:
    raise ConfigError(f'magnitude spectrum {path} has shape {magnitude.shape}; expected '
                      '[3, H, W//2+1]')
  return magnitude.astype(np.float32)


def radial_power_spectrum(images, num_bins: Optional[int] = None) -> np.ndarray:
  """Mean power |fft2|² per integer radial frequency (cycles per image), [num_bins].

  Images are float [0, 1] (or uint8) NHWC; each image's per-channel mean is removed first, and
  power is averaged over images and channels. Bin 0 is the DC term (zero after centring).
  """
  images = np.asarray(images)
  x = images.astype(np.float64) / (255.0 if images.dtype == np.uint8 else 1.0)
  x = x - x.mean(axis=(1, 2), keepdims=True)
  power = np.abs(np.fft.fft2(x, axes=(1, 2)))**2
  power = power.mean(axis=(0, 3))  # [H, W]
  height, width = power.shape
  fy = np.fft.fftfreq(height) * height
  fx = np.fft.fftfreq(width) * width
  radius = np.rint(np.sqrt(fy[:, None]**2 + fx[None, :]**2)).astype(int)
  num_bins = num_bins or min(height, width) // 2 + 1
  inside = radius < num_bins
  sums = np.bincount(radius[inside], weights=power[inside], minlength=num_bins)
  counts = np.bincount(radius[inside], minlength=num_bins)
  return sums / np.maximum(counts, 1)


def spectrum_distance(power: np.ndarray, reference: np.ndarray) -> float:
  """Mean |log10 P − log10 P_ref| over the non-DC radial bins, each spectrum first divided by
  its total non-DC power: compares the spectra's shapes (0 when they match), not the contrast."""
  def normalized(p):
    p = np.asarray(p, np.float64)[1:]
    return p / max(p.sum(), 1e-30)
  power, reference = normalized(power), normalized(reference)
  return float(np.mean(np.abs(np.log10(power + 1e-30) - np.log10(reference + 1e-30))))


def high_frequency_ratio(power: np.ndarray, reference: np.ndarray) -> float:
  """Share of the non-DC power in the upper half of the radial bins, relative to the
  reference's share: above 1 means excess high-frequency energy."""
  def share(p):
    p = np.asarray(p, np.float64)[1:]
    return p[len(p) // 2:].sum() / max(p.sum(), 1e-30)
  return float(share(power) / max(share(reference), 1e-30))
