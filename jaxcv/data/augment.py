"""On-device, per-sample random augmentation of a batch, run inside the jitted train step.

A pipeline is a string of ops separated by '|', each `name` or `name(key=value, ...)`:
    'crop(padding=4)|flip|cutout(size=16)'
Every op maps (rng, float images [N, H, W, C] in [0, 1]) -> images of the same kind, drawing
independent randomness per sample. Papers add ops with `@register('name')` and insert them where
their protocol says, e.g. COIN's random pixel displacement after crop and flip:
    'crop(padding=4)|flip|coin(alpha=2.0,wrap="legacy")'
A paper's ops live in its package (COIN's in jaxcv/unlearnable/augment.py, airbench's in
jaxcv/fast/augment.py) and are imported the first time a pipeline names them (the index of `_OPS`).
The grammar is jaxcv/specs.py's.

Ops that also mix labels (mixup, cutmix) act on the whole batch and live in a second registry
(`register_mixing`); a task that supports soft targets builds them with `build_mixing(spec)`
and gets a 'target' probability array in the batch (jaxcv/tasks/classification.py).
JPEG has no JAX codec: it is a dataset-level transform ('jpeg(quality=10):NAME' datasets,
jaxcv/unlearnable/datasets.py).
"""

from __future__ import annotations

import functools
from typing import Callable, Optional

import jax
import jax.numpy as jnp

from jaxcv import plugins
from jaxcv import specs
from jaxcv.errors import ConfigError

AugmentOp = Callable[..., jax.Array]
# A paper's ops live in its package and are imported on first use (jaxcv/plugins.py).
_OPS = plugins.Registry('augmentation op', modules={
    'coin': 'jaxcv.unlearnable.augment',
    'translate': 'jaxcv.fast.augment',
    **{name: 'jaxcv.data.contrastive' for name in (
        'resized_crop', 'color_jitter', 'random_grayscale', 'blur')},
})
# name -> check(**kwargs): validates an op's arguments when the pipeline is built.
_CHECKS: dict[str, Callable[..., None]] = {}


def register(name: str, check: Optional[Callable[..., None]] = None):
  def wrap(fn: AugmentOp) -> AugmentOp:
    _OPS.register(name, fn)
    if check is not None:
      _CHECKS[name] = check
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


# ITU-R 601-2 luma, as Pillow's convert('L') (the ISS-G defense's grayscale).
_LUMA = (0.299, 0.587, 0.114)


@register('grayscale')
def grayscale(rng, images):
  """Replaces RGB by its luma in all three channels (deterministic; rng unused)."""
  del rng
  if images.shape[-1] != 3:
    raise ConfigError(f'grayscale needs RGB images, got {images.shape[-1]} channels')
  luma = images @ jnp.asarray(_LUMA, images.dtype)
  return jnp.repeat(luma[..., None], 3, axis=-1)


# ---------------------------------------------------------------------------------------------
# Label-mixing ops: (rng, images [N, H, W, C], targets [N, K]) -> (images, targets)
# ---------------------------------------------------------------------------------------------

_MIXING_OPS = plugins.Registry('label-mixing op')
register_mixing = _MIXING_OPS.register


@register_mixing('mixup')
def mixup(rng, images, targets, alpha: float = 1.0):
  """Mixup (Zhang et al. 2018): one lambda ~ Beta(alpha, alpha) per batch and a random partner
  per image, as the reference implementation does."""
  lam_rng, perm_rng = jax.random.split(rng)
  lam = jax.random.beta(lam_rng, alpha, alpha)
  partner = jax.random.permutation(perm_rng, images.shape[0])
  images = lam * images + (1 - lam) * images[partner]
  return images, lam * targets + (1 - lam) * targets[partner]


@register_mixing('cutmix')
def cutmix(rng, images, targets, alpha: float = 1.0):
  """CutMix (Yun et al. 2019): a box of area ratio 1 - lambda (lambda ~ Beta(alpha, alpha)),
  uniformly centred and clipped at the border, is pasted from a random partner; the targets mix
  by the pasted area. One box per batch, as the reference implementation."""
  lam_rng, perm_rng, cy_rng, cx_rng = jax.random.split(rng, 4)
  n, h, w, _ = images.shape
  lam = jax.random.beta(lam_rng, alpha, alpha)
  cut = jnp.sqrt(1.0 - lam)
  cut_h, cut_w = jnp.floor(h * cut).astype(jnp.int32), jnp.floor(w * cut).astype(jnp.int32)
  cy, cx = jax.random.randint(cy_rng, (), 0, h), jax.random.randint(cx_rng, (), 0, w)
  top, bottom = jnp.clip(cy - cut_h // 2, 0, h), jnp.clip(cy + cut_h // 2, 0, h)
  left, right = jnp.clip(cx - cut_w // 2, 0, w), jnp.clip(cx + cut_w // 2, 0, w)
  ys, xs = jnp.arange(h)[:, None], jnp.arange(w)[None, :]
  box = (ys >= top) & (ys < bottom) & (xs >= left) & (xs < right)
  partner = jax.random.permutation(perm_rng, n)
  images = jnp.where(box[None, :, :, None], images[partner], images)
  kept = 1.0 - jnp.mean(box.astype(jnp.float32))
  return images, kept * targets + (1 - kept) * targets[partner]


def build_mixing(spec: str, num_classes: int) -> Optional[Callable]:
  """mix(rng, images, labels) -> (images, targets [N, num_classes]) applying the label-mixing
  ops in `spec` (e.g. 'mixup(alpha=1.0)'), or None when `spec` is empty."""
  parsed = parse(spec, _MIXING_OPS)
  for name, kwargs in parsed:
    if not kwargs.get('alpha', 1.0) > 0:
      raise ConfigError(f'{name}: alpha must be > 0 (Beta(alpha, alpha)), got {kwargs["alpha"]}')
  ops = [functools.partial(_MIXING_OPS[name], **kwargs) for name, kwargs in parsed]
  if not ops:
    return None

  def mix(rng, images, labels):
    images = to_float(images)
    targets = jax.nn.one_hot(labels, num_classes, dtype=jnp.float32)
    for op, op_rng in zip(ops, jax.random.split(rng, len(ops))):
      images, targets = op(op_rng, images, targets)
    return images, targets
  return mix


def op_names() -> list[str]:
  return sorted(_OPS)


def parse(spec: str, registry: Optional[plugins.Registry] = None) -> list[tuple[str, dict]]:
  """'crop(padding=4)|flip' -> [('crop', {'padding': 4}), ('flip', {})]; errors name the bad op.

  Unknown keywords and bad values fail when the pipeline is built, not inside the jit."""
  registry = _OPS if registry is None else registry
  what = registry.kind
  ops = []
  for op in specs.parse_pipeline(spec, what):
    # The op's own arguments follow (rng, images) or, for mixing ops, (rng, images, targets).
    accepted = {k: v for k, v in specs.parameters(registry[op.name], skip=1).items()
                if k not in ('images', 'targets')}
    kwargs = specs.bind(op, accepted, what)
    if op.name in _CHECKS:
      _CHECKS[op.name](**kwargs)
    ops.append((op.name, kwargs))
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
