"""Derived datasets by name: poisoned training sets and JPEG-compressed ones, through the data
layer (`jaxcv.data.load_dataset`), so a config selects them with `data.name` alone:

  cuda:cifar10                          CUDA with the defaults (pb 0.3, key 0, 3x3)
  cuda(pb=0.5,seed=1):cifar10           options in parentheses
  vuda:cifar10, huda:cifar10            the vertical / horizontal variants (see convolution.py)
  unlearnable(method=cuda,pb=0.3,seed=0):cifar10    the same with the method as an option
  jpeg(quality=10):cuda:cifar10         JPEG-compress (Pillow) a dataset: the ISS-J defense
  grayscale:cuda:cifar10                luma in all three channels: the ISS-G defense

Only the training split is transformed; every other split is the base dataset's own, so the
evaluation data stays clean. Results are cached like decoded archives (jaxcv/data/cache.py):
the key is the transform, its options and a digest of the base arrays.

JPEG runs on the host with Pillow, once per dataset (then cached), not in the jitted step: there
is no JPEG codec in JAX, and ISS-J compresses the training set once rather than per epoch.
Grayscale is deterministic too, so it is also offered here (besides the 'grayscale' augmentation
op): as a dataset it leaves the training program unchanged, which lets a sweep reuse compiled
programs between rows.
"""

from __future__ import annotations

import hashlib
import io
import logging
import time
from typing import Any, Callable, Optional

import numpy as np

from jaxcv.data import cache, registry
from jaxcv.data.dataset import ArrayDataset
from jaxcv.errors import ConfigError
from jaxcv.unlearnable import convolution

TRAIN_SPLIT = 'train'
_log = logging.getLogger(__name__)

_POISON_OPTIONS = {'method': 'cuda', 'pb': 0.3, 'seed': 0, 'size': 3}
_JPEG_OPTIONS = {'quality': 10}
_LUMA = (0.299, 0.587, 0.114)


def _digest(dataset: ArrayDataset) -> str:
  h = hashlib.sha256()
  for array in (dataset.images, np.asarray(dataset.labels)):
    h.update(str((array.dtype, array.shape)).encode())
    h.update(np.ascontiguousarray(array).data)
  return h.hexdigest()


def _cached(label: str, params: dict[str, Any], base: ArrayDataset,
            build: Callable[[], ArrayDataset]) -> ArrayDataset:
  """build(), or the cache entry for (params, base content) when there is a valid one."""
  path = cache.keyed_path(cache.cache_dir(), label, {'params': params, 'base': _digest(base)})
  return cache.cached_file(path, build, load=cache.load, write=cache.write_dataset, what=label)


def poisoned(base: ArrayDataset, method: str = 'cuda', pb: float = 0.3, seed: int = 0,
             size: int = 3) -> ArrayDataset:
  """The base split with every image poisoned by its class's private filter (not cached)."""
  if base.images.shape[-1] not in (1, 3):
    raise ConfigError(f'{method} poisons images with 1 or 3 channels, got {base.image_shape}')
  if np.asarray(base.labels).ndim != 1:
    raise ConfigError(f'{method} needs class labels, not label maps')
  kernels = convolution.class_kernels(base.num_classes, method, pb, seed, size)
  start = time.perf_counter()
  images = convolution.poison(base.images, base.labels, kernels)
  _log.info('%s: poisoned %d images in %.1f s', method, len(images), time.perf_counter() - start)
  return ArrayDataset(images=images, labels=base.labels, class_names=base.class_names,
                      domains=base.domains, domain_names=base.domain_names,
                      source=f'{method}(pb={pb},seed={seed},size={size}) of {base.source}')


def jpeg_compressed(base: ArrayDataset, quality: int = 10) -> ArrayDataset:
  """Every image JPEG-encoded at `quality` and decoded again, with Pillow."""
  from PIL import Image  # pylint: disable=g-import-not-at-top
  if not 1 <= quality <= 95:
    raise ConfigError(f'jpeg quality must be in [1, 95], got {quality}')
  out = np.empty_like(base.images)
  grey = base.images.shape[-1] == 1
  for i, image in enumerate(base.images):
    buffer = io.BytesIO()
    Image.fromarray(image[..., 0] if grey else image).save(buffer, format='JPEG', quality=quality)
    buffer.seek(0)
    decoded = np.asarray(Image.open(buffer).convert('L' if grey else 'RGB'))
    out[i] = decoded[..., None] if grey else decoded
  return ArrayDataset(images=out, labels=base.labels, class_names=base.class_names,
                      domains=base.domains, domain_names=base.domain_names,
                      source=f'jpeg(quality={quality}) of {base.source}')


def grayscale(base: ArrayDataset) -> ArrayDataset:
  """RGB images replaced by their ITU-R 601-2 luma (Pillow's convert('L')) in all channels."""
  if base.images.shape[-1] != 3:
    raise ConfigError(f'grayscale needs RGB images, got {base.image_shape}')
  luma = base.images.astype(np.float32) @ np.asarray(_LUMA, np.float32)
  luma = np.clip(np.round(luma), 0, 255).astype(np.uint8)
  return ArrayDataset(images=np.repeat(luma[..., None], 3, axis=-1), labels=base.labels,
                      class_names=base.class_names, domains=base.domains,
                      domain_names=base.domain_names, source=f'grayscale of {base.source}')


def _register_kinds(*kinds: str):
  """Registers a function as the data layer's derived datasets `kinds` (jaxcv/data/registry.py)."""
  def wrap(fn):
    for kind in kinds:
      registry.DERIVED.register(kind, fn)
    return fn
  return wrap


@_register_kinds('cuda', 'vuda', 'huda', 'unlearnable', 'jpeg', 'grayscale')
def load_derived(kind: str, options: Optional[str], base: ArrayDataset,
                 split: str) -> ArrayDataset:
  """The data layer's hook (jaxcv/data/registry.py): dataset `kind(options):BASE` for `split`,
  given BASE's split already loaded."""
  if split != TRAIN_SPLIT:
    return base  # Evaluation data stays clean.
  if kind == 'grayscale':
    registry.parse_derived_options(kind, options, {})
    return grayscale(base)  # Cheaper to recompute than to cache.
  if kind == 'jpeg':
    params = registry.parse_derived_options(kind, options, _JPEG_OPTIONS)
    return _cached(f'jpeg-{split}', {'kind': kind, **params}, base,
                   lambda: jpeg_compressed(base, **params))
  defaults = dict(_POISON_OPTIONS)
  if kind != 'unlearnable':
    defaults.pop('method')
  params = registry.parse_derived_options(kind, options, defaults)
  params.setdefault('method', kind)
  convolution.kernel_shape(params['method'], params['size'])  # Validates method and size.
  return _cached(f'{params["method"]}-{split}', {'kind': 'poison', **params}, base,
                 lambda: poisoned(base, **params))
