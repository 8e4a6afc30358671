"""2x2 mosaics of test images, BROAD's multi-class shift (CoComageNet) at CIFAR scale.

Four images of the base split are tiled 2x2 and resized back to the base size (bilinear,
antialiased, in jnp). With `mixed=True` the four come from at least `min_classes` different
classes and the label is -1 (several classes, as CoComageNet's); with `mixed=False` all four come
from one class and keep its label: the "mono" control, which should look in-distribution.
Deterministic per seed.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxcv.errors import ConfigError

MIXED_LABEL = -1


def mosaic_indices(labels: np.ndarray, count: int, mixed: bool, min_classes: int = 2,
                   seed: int = 0) -> np.ndarray:
  """[count, 4] indices into `labels`: each row from >= min_classes classes (mixed) or from one
  class (mono)."""
  labels = np.asarray(labels)
  classes = np.unique(labels)
  if mixed and not 2 <= min_classes <= min(4, len(classes)):
    raise ConfigError(f'mosaic min_classes must be in [2, {min(4, len(classes))}] for '
                      f'{len(classes)} classes, got {min_classes}')
  rng = np.random.default_rng(seed)
  rows = []
  if mixed:
    while len(rows) < count:  # Rejection: a uniform draw of 4 almost always has >= 2 classes.
      pick = rng.choice(len(labels), 4, replace=False)
      if len(np.unique(labels[pick])) >= min_classes:
        rows.append(pick)
  else:
    by_class = {c: np.flatnonzero(labels == c) for c in classes}
    usable = [c for c in classes if len(by_class[c]) >= 4]
    if not usable:
      raise ConfigError('same-class mosaics need a class with at least 4 images')
    for c in rng.choice(usable, count):
      rows.append(rng.choice(by_class[c], 4, replace=False))
  return np.stack(rows)


@jax.jit
def _tile(images):
  """[M, 4, H, W, C] uint8 -> [M, H, W, C] uint8: a 2x2 grid resized to H x W."""
  m, _, h, w, c = images.shape
  x = images.astype(jnp.float32).reshape(m, 2, 2, h, w, c)
  x = x.transpose(0, 1, 3, 2, 4, 5).reshape(m, 2 * h, 2 * w, c)
  x = jax.image.resize(x, (m, h, w, c), 'bilinear', antialias=True)
  return jnp.clip(jnp.round(x), 0, 255).astype(jnp.uint8)


def mosaics(images: np.ndarray, labels: np.ndarray, count: int, mixed: bool = True,
            min_classes: int = 2, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """(mosaic images [count, H, W, C] uint8, labels [count], source indices [count, 4])."""
  index = mosaic_indices(labels, count, mixed, min_classes, seed)
  tiles = np.asarray(_tile(jnp.asarray(np.asarray(images)[index])))
  out_labels = (np.full(count, MIXED_LABEL, np.int32) if mixed
                else np.asarray(labels)[index[:, 0]].astype(np.int32))
  return tiles, out_labels, index
