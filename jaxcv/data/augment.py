"""On-device, per-sample random augmentation of a batch, run inside the jitted train step.

A pipeline is a string of ops separated by '|', each `name` or `name(key=value, ...)`:
    'crop(padding=4)|flip|cutout(size=16)'
Every op maps (rng, float images [N, H, W, C] in [0, 1]) -> images of the same kind, drawing
independent randomness per sample. Papers add ops with `@register('name')` (COIN's pixel
displacement, JPEG, ...) and insert them where their protocol says.
"""

from __future__ import annotations

import ast
import functools
import re
from typing import Callable

import jax
import jax.numpy as jnp

from jaxcv.errors import ConfigError

AugmentOp = Callable[..., jax.Array]
_OPS: dict[str, AugmentOp] = {}


def register(name: str):
  def wrap(fn: AugmentOp) -> AugmentOp:
    _OPS[name] = fn
    return fn
  return wrap


def to_float(images: jax.Array) -> jax.Array:
  """uint8 [0, 255] -> float32 [0, 1]; float input is passed through."""
  if images.dtype == jnp.uint8:
    return images.astype(jnp.float32) / 255.0
  return images.astype(jnp.float32)


@register('crop')
def random_crop(rng, images, padding: int = 4, mode: str = 'constant'):
  """Pads by `padding` pixels (zeros by default, or 'reflect') and takes a random crop."""
  n, h, w, c = images.shape
  padded = jnp.pad(images, ((0, 0), (padding, padding), (padding, padding), (0, 0)), mode=mode)
  offsets = jax.random.randint(rng, (n, 2), 0, 2 * padding + 1)
  crop = lambda image, o: jax.lax.dynamic_slice(image, (o[0], o[1], 0), (h, w, c))
  return jax.vmap(crop)(padded, offsets)


@register('flip')
def random_flip(rng, images, p: float = 0.5):
  """Horizontal flip with probability p."""
  flip = jax.random.bernoulli(rng, p, (images.shape[0], 1, 1, 1))
  return jnp.where(flip, images[:, :, ::-1, :], images)


@register('cutout')
def cutout(rng, images, size: int = 16):
  """Zeroes a size x size square at a random centre; it may extend past the border (DeVries 2017)."""
  n, h, w, _ = images.shape
  cy_rng, cx_rng = jax.random.split(rng)
  cy = jax.random.randint(cy_rng, (n, 1, 1, 1), 0, h)
  cx = jax.random.randint(cx_rng, (n, 1, 1, 1), 0, w)
  ys = jnp.arange(h)[None, :, None, None]
  xs = jnp.arange(w)[None, None, :, None]
  top, left = cy - size // 2, cx - size // 2
  inside = (ys >= top) & (ys < top + size) & (xs >= left) & (xs < left + size)
  return jnp.where(inside, 0.0, images)


def op_names() -> list[str]:
  return sorted(_OPS)


_OP_RE = re.compile(r'^\s*(\w+)\s*(?:\((.*)\))?\s*$')


def parse(spec: str) -> list[tuple[str, dict]]:
  """'crop(padding=4)|flip' -> [('crop', {'padding': 4}), ('flip', {})]; errors name the bad op."""
  ops = []
  for part in filter(str.strip, (spec or '').split('|')):
    match = _OP_RE.match(part)
    if not match:
      raise ConfigError(f'augmentation op {part!r} is not of the form name(key=value, ...)')
    name, args = match.group(1), match.group(2) or ''
    if name not in _OPS:
      raise ConfigError(f'unknown augmentation op {name!r}; known: {op_names()}')
    try:
      call = ast.parse(f'f({args})', mode='eval').body
      kwargs = {kw.arg: ast.literal_eval(kw.value) for kw in call.keywords}
      if call.args:
        raise ValueError('use keyword arguments')
    except (SyntaxError, ValueError) as e:
      raise ConfigError(f'augmentation op {part!r}: {e}') from None
    ops.append((name, kwargs))
  return ops


def build(spec: str) -> Callable[[jax.Array, jax.Array], jax.Array]:
  """Returns augment(rng, uint8 or float images) -> float32 images in [0, 1]."""
  ops = [functools.partial(_OPS[name], **kwargs) for name, kwargs in parse(spec)]

  def augment(rng, images):
    images = to_float(images)
    for op, op_rng in zip(ops, jax.random.split(rng, max(len(ops), 1))):
      images = op(op_rng, images)
    return images
  return augment
