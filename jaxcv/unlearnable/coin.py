"""COIN: random bilinear pixel displacement, the defense of Wang et al. (arXiv 2311.18403).

For every training image, independently: draw displacement fields dy, dx ~ U(-alpha, alpha), one
value per pixel shared by the channels; output pixel (i, j, c) is the input bilinearly
interpolated at (i + dy_ij, j + dx_ij, c), with coordinates outside the image wrapped around;
clip to [0, 1] and truncate to the uint8 grid (the official code casts with np.uint8).

The official code calls SciPy's `map_coordinates(order=1, mode='wrap')`. SciPy's legacy 'wrap'
treats the first and last samples as the same point, so coordinates wrap with period n - 1;
`wrap='legacy'` (the default) reproduces it. `wrap='grid'` wraps with period n, like SciPy's
'grid-wrap' and JAX's own `map_coordinates(mode='wrap')`. At 32x32 with alpha = 2, about a
quarter of the pixels can sample across the border, so the two differ slightly.

Everything here is batched and jittable: floor/frac, a 4-neighbour gather, a weighted sum.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxcv.errors import ConfigError

WRAP_MODES = ('legacy', 'grid')
# The official code's `severity` argument (1..7) -> alpha.
SEVERITY_ALPHA = (0.8, 1.2, 1.6, 2.0, 2.4, 2.8, 3.2)


def check_options(alpha: float, wrap: str) -> None:
  if not alpha >= 0:
    raise ConfigError(f'coin alpha must be >= 0, got {alpha}')
  if wrap not in WRAP_MODES:
    raise ConfigError(f"coin wrap must be one of {WRAP_MODES} ('legacy': SciPy's 'wrap', period "
                      f"n-1, as the official code; 'grid': period n), got {wrap!r}")


def displacement_fields(rng: jax.Array, shape: tuple[int, int, int],
                        alpha: float) -> tuple[jax.Array, jax.Array]:
  """(dy, dx), each [N, H, W] ~ U(-alpha, alpha): one independent field per image."""
  dy_rng, dx_rng = jax.random.split(rng)
  dy = jax.random.uniform(dy_rng, shape, jnp.float32, -alpha, alpha)
  dx = jax.random.uniform(dx_rng, shape, jnp.float32, -alpha, alpha)
  return dy, dx


def _wrap_coordinates(coords: jax.Array, n: int, wrap: str) -> tuple[jax.Array, jax.Array,
                                                                      jax.Array]:
  """(lower index, upper index, fraction) of each coordinate along an axis of length n."""
  if wrap == 'grid':
    lower = jnp.floor(coords)
    frac = coords - lower
    lower = lower.astype(jnp.int32)
    return jnp.mod(lower, n), jnp.mod(lower + 1, n), frac
  # SciPy's legacy 'wrap': coordinates outside [0, n-1] are shifted by multiples of n - 1, then
  # interpolated between in-range neighbours (index n-1 is reached only with weight 0).
  period = max(n - 1, 1)
  coords = jnp.where(coords < 0, coords + period * (jnp.floor(-coords / period) + 1),
                     jnp.where(coords > n - 1, coords - period * jnp.floor(coords / period),
                               coords))
  lower = jnp.floor(coords)
  frac = coords - lower
  lower = jnp.clip(lower.astype(jnp.int32), 0, n - 1)
  return lower, jnp.minimum(lower + 1, n - 1), frac


def bilinear_warp(images: jax.Array, dy: jax.Array, dx: jax.Array,
                  wrap: str = 'legacy') -> jax.Array:
  """Samples images [N, H, W, C] at (i + dy, j + dx) bilinearly; dy, dx broadcast to [N, H, W]."""
  n, h, w, c = images.shape
  rows = jnp.arange(h, dtype=jnp.float32)[None, :, None] + dy
  cols = jnp.arange(w, dtype=jnp.float32)[None, None, :] + dx
  rows, cols = jnp.broadcast_arrays(rows, cols)
  rows = jnp.broadcast_to(rows, (n, h, w))
  cols = jnp.broadcast_to(cols, (n, h, w))
  r0, r1, fr = _wrap_coordinates(rows, h, wrap)
  c0, c1, fc = _wrap_coordinates(cols, w, wrap)
  flat = images.reshape(n, h * w, c)

  def gather(r, cc):
    index = (r * w + cc).reshape(n, h * w, 1)
    return jnp.take_along_axis(flat, index, axis=1).reshape(n, h, w, c)

  fr, fc = fr[..., None], fc[..., None]
  return ((1 - fr) * ((1 - fc) * gather(r0, c0) + fc * gather(r0, c1))
          + fr * ((1 - fc) * gather(r1, c0) + fc * gather(r1, c1)))


def quantize_uint8(images: jax.Array) -> jax.Array:
  """Clips to [0, 1] and truncates to the uint8 grid, as `np.uint8(x * 255)` does, kept float."""
  return jnp.floor(jnp.clip(images, 0.0, 1.0) * 255.0) / 255.0


def coin(rng: jax.Array, images: jax.Array, alpha: float = 2.0, wrap: str = 'legacy',
         quantize: bool = True) -> jax.Array:
  """COIN on float images [N, H, W, C] in [0, 1], a fresh displacement per image."""
  check_options(alpha, wrap)
  n, h, w, _ = images.shape
  dy, dx = displacement_fields(rng, (n, h, w), alpha)
  out = jnp.clip(bilinear_warp(images, dy, dx, wrap), 0.0, 1.0)
  return quantize_uint8(out) if quantize else out
