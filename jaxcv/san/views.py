"""Two views of a batch with known geometric transforms, and the map back to the first view.

IIC and PiCIE compare the cluster assignments of a pixel in two views: a photometric change
(colour jitter) and a geometric one (IIC: a random affine, PiCIE: flip and crop), the second
view's outputs warped back into the first's frame. Here the geometric transform is a horizontal
flip and a translation by whole feature cells (`stride` pixels), so the inverse at feature
resolution is exact: no resampling, and a mask marks the cells view 2 does not see.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp


@dataclasses.dataclass(frozen=True)
class ViewOptions:
  brightness: float = 0.3  # Multiplicative, uniform in [1 - b, 1 + b].
  contrast: float = 0.3
  saturation: float = 0.3
  hue_shift: float = 0.05  # Per-channel additive offset, uniform in [-h, h].
  flip: bool = True
  max_shift: int = 2  # Translation, in feature cells, uniform in [-max_shift, max_shift].


def jitter(rng: jax.Array, images: jax.Array, o: ViewOptions) -> jax.Array:
  """Per-image colour jitter of [N, H, W, 3] images in [0, 1]."""
  n = images.shape[0]
  kb, kc, ks, kh = jax.random.split(rng, 4)
  u = lambda k, r, shape=(n, 1, 1, 1): jax.random.uniform(k, shape, minval=1 - r, maxval=1 + r)
  x = images * u(kb, o.brightness)
  mean = jnp.mean(x, axis=(1, 2, 3), keepdims=True)
  x = (x - mean) * u(kc, o.contrast) + mean
  grey = jnp.mean(x, axis=-1, keepdims=True)
  x = (x - grey) * u(ks, o.saturation) + grey
  x = x + jax.random.uniform(kh, (n, 1, 1, images.shape[-1]), minval=-o.hue_shift,
                             maxval=o.hue_shift)
  return jnp.clip(x, 0.0, 1.0)


@dataclasses.dataclass(frozen=True)
class Transform:
  """Per-image geometric transform of view 2: flip [N] bool, shift [N, 2] in feature cells."""
  flip: jax.Array
  shift: jax.Array


def sample_transform(rng: jax.Array, n: int, o: ViewOptions) -> Transform:
  kf, ks = jax.random.split(rng)
  flip = jax.random.bernoulli(kf, 0.5, (n,)) if o.flip else jnp.zeros((n,), bool)
  shift = jax.random.randint(ks, (n, 2), -o.max_shift, o.max_shift + 1)
  return Transform(flip, shift)


def _translate(x: jax.Array, shift: jax.Array, fill: float) -> jax.Array:
  """x [H, W, C] moved by shift (dy, dx) pixels; uncovered pixels get `fill`."""
  h, w = x.shape[:2]
  moved = jnp.roll(x, (shift[0], shift[1]), axis=(0, 1))
  ys, xs = jnp.arange(h)[:, None] - shift[0], jnp.arange(w)[None, :] - shift[1]
  inside = (ys >= 0) & (ys < h) & (xs >= 0) & (xs < w)
  return jnp.where(inside[..., None], moved, fill)


def apply_transform(images: jax.Array, t: Transform, stride: int, fill: float = 0.5):
  """View 2's geometry: flip, then translate by shift * stride pixels."""
  def one(x, flip, shift):
    x = jnp.where(flip, x[:, ::-1], x)
    return _translate(x, shift * stride, fill)
  return jax.vmap(one)(images, t.flip, t.shift)


def to_first_view(outputs: jax.Array, t: Transform) -> tuple[jax.Array, jax.Array]:
  """View 2's outputs [N, h, w, C] (at feature resolution) in view 1's frame, and the mask
  [N, h, w] of the cells view 2 saw (the rest are zero and must not be scored)."""
  def one(y, flip, shift):
    back = _translate(y, -shift, 0.0)
    seen = _translate(jnp.ones(y.shape[:2] + (1,), y.dtype), shift, 0.0)  # In view 2's frame.
    seen = _translate(seen, -shift, 0.0)[..., 0]
    back = jnp.where(flip, back[:, ::-1], back)
    seen = jnp.where(flip, seen[:, ::-1], seen)
    return back, seen
  return jax.vmap(one)(outputs, t.flip, t.shift)


def two_views(rng: jax.Array, images: jax.Array, o: ViewOptions, stride: int):
  """(view 1, view 2, transform): view 1 is jittered, view 2 jittered and transformed."""
  k1, k2, kt = jax.random.split(rng, 3)
  t = sample_transform(kt, images.shape[0], o)
  view1 = jitter(k1, images, o)
  view2 = apply_transform(jitter(k2, images, o), t, stride)
  return view1, view2, t
