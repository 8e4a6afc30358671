"""MACO's robustness transforms: random square crops with a shrinking mean size, resized to the
model's input, sub-pixel jitter, and noise (Xplique `maco`; the only regulariser it uses).

At step t of T the crop side (a fraction of the canvas) is drawn from N(s̄_t, scale_std), clipped
to [min_scale, 1], with s̄_t going linearly from `crop_scale[0]` to `crop_scale[1]`; crop centres
are drawn from N(0.5, center_std) per axis (plus uniform jitter of ±`jitter` canvas pixels) and
clipped so the crop stays inside the canvas. Each crop is bilinearly resampled to the output size
(antialiased when it shrinks), then N(0, σ) + U(−σ/2, σ/2) noise is added.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp


@dataclasses.dataclass(frozen=True)
class CropSchedule:
  num_crops: int = 8
  crop_scale: tuple[float, float] = (0.5, 0.05)  # Xplique's schedule for a 512² canvas.
  scale_std: float = 0.05
  min_scale: float = 0.05
  center_std: float = 0.15
  jitter: float = 0.0  # In canvas pixels.
  noise: float = 0.08  # Xplique's σ for a (-1, 1) value range.

  def mean_scale(self, progress: jax.Array) -> jax.Array:
    """s̄_t for progress t/(T-1) in [0, 1]."""
    start, end = self.crop_scale
    return start + (end - start) * progress


def crop_boxes(key: jax.Array, schedule: CropSchedule, progress: jax.Array) -> jax.Array:
  """[num_crops, 3] boxes (centre y, centre x, side) as fractions of the canvas."""
  k_side, k_center, k_jitter = jax.random.split(key, 3)
  n = schedule.num_crops
  side = schedule.mean_scale(progress) + schedule.scale_std * jax.random.normal(k_side, (n,))
  side = jnp.clip(side, schedule.min_scale, 1.0)
  center = 0.5 + schedule.center_std * jax.random.normal(k_center, (n, 2))
  return jnp.concatenate([center, side[:, None]], axis=1), jax.random.uniform(
      k_jitter, (n, 2), minval=-1.0, maxval=1.0)


def crop_and_resize(image: jax.Array, box: jax.Array, jitter: jax.Array, out_size: tuple[int, int],
                    jitter_pixels: float) -> jax.Array:
  """One crop of `image` [H, W, C] (box = centre y, centre x, side; fractions) resampled to
  `out_size`; differentiable in the image."""
  height, width = image.shape[:2]
  side = box[2]
  center = box[:2] + jitter * jitter_pixels / jnp.array([height, width])
  center = jnp.clip(center, side / 2, 1 - side / 2)
  sizes = side * jnp.array([height, width])  # Crop side in canvas pixels, per axis.
  corner = (center - side / 2) * jnp.array([height, width])
  scale = jnp.array(out_size, jnp.float32) / sizes
  return jax.image.scale_and_translate(image, (*out_size, image.shape[2]), (0, 1), scale,
                                       -corner * scale, method='linear', antialias=True)


def transform(key: jax.Array, image: jax.Array, schedule: CropSchedule, progress: jax.Array,
              out_size: tuple[int, int]) -> jax.Array:
  """The crops of one image for one step, with noise: [num_crops, h, w, C]."""
  k_box, k_normal, k_uniform = jax.random.split(key, 3)
  boxes, jitter = crop_boxes(k_box, schedule, progress)
  crops = jax.vmap(lambda b, j: crop_and_resize(image, b, j, out_size, schedule.jitter))(
      boxes, jitter)
  sigma = schedule.noise
  noise = (sigma * jax.random.normal(k_normal, crops.shape)
           + jax.random.uniform(k_uniform, crops.shape, minval=-sigma / 2, maxval=sigma / 2))
  return crops + noise
