"""The contrastive (SimCLR) augmentation ops, on device and per sample, for any task's pipeline:

  'resized_crop(scale=(0.2, 1.0))|flip|color_jitter(strength=0.5, p=0.8)|random_grayscale(p=0.2)'
  '...|blur(p=0.5)'   (SimCLR's ImageNet recipe; its CIFAR recipe has no blur)

Each op maps (rng, float images [N, H, W, C] in [0, 1]) -> images of the same shape, drawing
independent randomness per image (jaxcv/data/augment.py's contract). torchvision's transforms
(what SimCLR's PyTorch ports use) run per image on the host; these are written in JAX so the two
views of a batch are drawn inside the jitted step, like every other augmentation of the loop.
Departures from torchvision, for vectorisation: resized_crop clips an out-of-range box instead of
retrying 10 times and falling back to a centre crop; colour jitter applies brightness, contrast,
saturation, hue in that fixed order (torchvision shuffles it) and shifts hue by a rotation of the
YIQ chroma plane instead of an HSV round trip.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from jaxcv.data.augment import register
from jaxcv.errors import ConfigError

_LUMA = (0.299, 0.587, 0.114)  # ITU-R 601-2, as torchvision's rgb_to_grayscale.


def _check_probability(p: float = 0.5, **_) -> None:
  if not 0 <= p <= 1:
    raise ConfigError(f'probability p must be in [0, 1], got {p}')


def _check_scale(scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3)) -> None:
  if len(scale) != 2 or not 0 < scale[0] <= scale[1] <= 1:
    raise ConfigError(f'resized_crop: scale must be (low, high) with 0 < low <= high <= 1, '
                      f'got {scale}')
  if len(ratio) != 2 or not 0 < ratio[0] <= ratio[1]:
    raise ConfigError(f'resized_crop: ratio must be (low, high) with 0 < low <= high, got {ratio}')


def crop_boxes(rng, n: int, height: int, width: int, scale, ratio) -> jax.Array:
  """[n, 4] float boxes (top, left, h, w): area fraction ~ U(scale), log aspect ~ U(log ratio),
  position uniform; boxes that do not fit are clipped to the image."""
  area_rng, ratio_rng, y_rng, x_rng = jax.random.split(rng, 4)
  area = jax.random.uniform(area_rng, (n,), minval=scale[0], maxval=scale[1]) * height * width
  log_ratio = jax.random.uniform(ratio_rng, (n,), minval=math.log(ratio[0]),
                                 maxval=math.log(ratio[1]))
  w = jnp.clip(jnp.round(jnp.sqrt(area * jnp.exp(log_ratio))), 1, width)
  h = jnp.clip(jnp.round(jnp.sqrt(area / jnp.exp(log_ratio))), 1, height)
  top = jnp.floor(jax.random.uniform(y_rng, (n,)) * (height - h + 1))
  left = jnp.floor(jax.random.uniform(x_rng, (n,)) * (width - w + 1))
  return jnp.stack([top, left, h, w], axis=1)


@register('resized_crop', check=_check_scale)
def random_resized_crop(rng, images, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3)):
  """torchvision's RandomResizedCrop back to the input size (bilinear, antialiased)."""
  n, height, width, channels = images.shape
  boxes = crop_boxes(rng, n, height, width, scale, ratio)

  def crop(image, box):
    top, left, h, w = box[0], box[1], box[2], box[3]
    factors = jnp.stack([height / h, width / w])
    return jax.image.scale_and_translate(
        image, (height, width, channels), (0, 1), factors, -jnp.stack([top, left]) * factors,
        'linear', antialias=True)
  return jax.vmap(crop)(images, boxes)


def _gray(images: jax.Array) -> jax.Array:
  return (images @ jnp.asarray(_LUMA, images.dtype))[..., None]


def _factor(rng, n: int, amount: float) -> jax.Array:
  """Per-image factor ~ U(max(0, 1 - amount), 1 + amount), torchvision's jitter range."""
  return jax.random.uniform(rng, (n, 1, 1, 1), minval=max(0.0, 1 - amount), maxval=1 + amount)


def _rotate_hue(images: jax.Array, turns: jax.Array) -> jax.Array:
  """Rotates the chroma (I, Q) plane of YIQ by `turns` of a full circle, per image."""
  to_yiq = jnp.asarray([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322],
                        [0.211, -0.523, 0.312]], images.dtype)
  yiq = images @ to_yiq.T
  angle = 2 * jnp.pi * turns[:, 0, 0, 0]
  cos, sin = jnp.cos(angle)[:, None, None], jnp.sin(angle)[:, None, None]
  i, q = yiq[..., 1], yiq[..., 2]
  yiq = jnp.stack([yiq[..., 0], cos * i - sin * q, sin * i + cos * q], axis=-1)
  return yiq @ jnp.linalg.inv(to_yiq).T


@register('color_jitter', check=_check_probability)
def color_jitter(rng, images, strength: float = 0.5, p: float = 0.8):
  """SimCLR's colour distortion: with probability p, brightness, contrast and saturation jitter
  of 0.8 * strength and hue jitter of 0.2 * strength (SimCLR's get_color_distortion)."""
  if images.shape[-1] != 3:
    raise ConfigError(f'color_jitter needs RGB images, got {images.shape[-1]} channels')
  n = images.shape[0]
  apply_rng, b_rng, c_rng, s_rng, h_rng = jax.random.split(rng, 5)
  amount = 0.8 * strength
  x = images * _factor(b_rng, n, amount)
  x = jnp.clip(x, 0, 1)
  mean = jnp.mean(_gray(x), axis=(1, 2, 3), keepdims=True)
  x = jnp.clip(mean + (x - mean) * _factor(c_rng, n, amount), 0, 1)
  gray = _gray(x)
  x = jnp.clip(gray + (x - gray) * _factor(s_rng, n, amount), 0, 1)
  hue = 0.2 * strength
  x = jnp.clip(_rotate_hue(x, jax.random.uniform(h_rng, (n, 1, 1, 1), minval=-hue,
                                                 maxval=hue)), 0, 1)
  apply = jax.random.bernoulli(apply_rng, p, (n, 1, 1, 1))
  return jnp.where(apply, x, images)


@register('random_grayscale', check=_check_probability)
def random_grayscale(rng, images, p: float = 0.2):
  """With probability p per image, its luma in every channel."""
  gray = jnp.broadcast_to(_gray(images), images.shape)
  return jnp.where(jax.random.bernoulli(rng, p, (images.shape[0], 1, 1, 1)), gray, images)


def _check_blur(p: float = 0.5, sigma=(0.1, 2.0), kernel_fraction: float = 0.1) -> None:
  _check_probability(p)
  if len(sigma) != 2 or not 0 < sigma[0] <= sigma[1]:
    raise ConfigError(f'blur: sigma must be (low, high) with 0 < low <= high, got {sigma}')
  if not 0 < kernel_fraction <= 1:
    raise ConfigError(f'blur: kernel_fraction must be in (0, 1], got {kernel_fraction}')


@register('blur', check=_check_blur)
def gaussian_blur(rng, images, p: float = 0.5, sigma=(0.1, 2.0), kernel_fraction: float = 0.1):
  """SimCLR's Gaussian blur: with probability p, sigma ~ U(sigma), an odd kernel of about
  kernel_fraction of the image height, separable, reflect-padded at the border."""
  n, height, _, _ = images.shape
  radius = max(1, int(round(kernel_fraction * height)) // 2)
  apply_rng, sigma_rng = jax.random.split(rng)
  sigmas = jax.random.uniform(sigma_rng, (n,), minval=sigma[0], maxval=sigma[1])
  offsets = jnp.arange(-radius, radius + 1, dtype=jnp.float32)
  taps = jnp.exp(-offsets[None, :] ** 2 / (2 * sigmas[:, None] ** 2))
  taps = taps / jnp.sum(taps, axis=1, keepdims=True)  # [n, 2r + 1]
  padded = jnp.pad(images, ((0, 0), (radius, radius), (radius, radius), (0, 0)), mode='reflect')
  h, w = images.shape[1:3]
  rows = sum(taps[:, t, None, None, None] * padded[:, t:t + h] for t in range(2 * radius + 1))
  blurred = sum(taps[:, t, None, None, None] * rows[:, :, t:t + w] for t in range(2 * radius + 1))
  return jnp.where(jax.random.bernoulli(apply_rng, p, (n, 1, 1, 1)), blurred, images)
