"""The in-memory dataset every source produces and every loader consumes."""

from __future__ import annotations

import dataclasses
from typing import Optional, Sequence

import numpy as np

from jaxcv.errors import DatasetFormatError


# The value segmentation label maps use for unlabelled pixels when a dataset declares no
# ignore_index (COCO-Stuff, Cityscapes, Potsdam); evaluators choose what to do with it.
VOID_LABEL = 255


@dataclasses.dataclass
class ArrayDataset:
  """A whole split held in host memory as uint8 images.

  Attributes:
    images: uint8 array [N, H, W, C] (C = 1 for greyscale, 3 for colour).
    labels: int32 array [N] of class indices, or [N, H, W] label maps for
      segmentation (see `ignore_index`).
    class_names: names of the classes, indexed by label.
    domains: optional int32 array [N] of domain indices (DomainBed-style data).
    domain_names: names of the domains, indexed by `domains`.
    ignore_index: label value that marks pixels to ignore (segmentation), or None.
    source: a human-readable description of where the data came from.
  """
  images: np.ndarray
  labels: np.ndarray
  class_names: Sequence[str]
  domains: Optional[np.ndarray] = None
  domain_names: Optional[Sequence[str]] = None
  ignore_index: Optional[int] = None
  source: str = ''

  def __post_init__(self):
    # Checked where every dataset is made, so bad files fail here, naming their source, rather
    # than as a shape error deep in training or, for out-of-range labels, not at all.
    where = f' in {self.source}' if self.source else ''
    images, labels = self.images, np.asarray(self.labels)
    if images.dtype != np.uint8 or images.ndim != 4:
      raise DatasetFormatError(f'images must be uint8 [N, H, W, C], got {images.dtype} '
                               f'{images.shape}{where}')
    if len(labels) != len(images):
      raise DatasetFormatError(f'{len(images)} images but {len(labels)} labels{where}')
    if labels.ndim != 1 and labels.shape[1:] != images.shape[1:3]:
      raise DatasetFormatError(f'labels must be [N] class indices or [N, H, W] label maps for '
                               f'images {images.shape}; got shape {labels.shape}{where}')
    if self.domains is not None and len(self.domains) != len(images):
      raise DatasetFormatError(f'{len(images)} images but {len(self.domains)} domain ids{where}')
    if labels.size:
      n = len(self.class_names)
      bad = (labels < 0) | (labels >= n)
      if self.ignore_index is not None:
        bad &= labels != self.ignore_index
      elif labels.ndim > 1:  # Label maps: 255 is the field's unlabelled ('void') value.
        bad &= labels != VOID_LABEL
      if bad.any():
        raise DatasetFormatError(
            f'labels outside 0..{n - 1} (the {n} classes): {int(np.count_nonzero(bad))} of them, '
            f'e.g. {labels[bad].flat[0]}{where}')

  def __len__(self) -> int:
    return len(self.images)

  @property
  def num_classes(self) -> int:
    return len(self.class_names)

  @property
  def image_shape(self) -> tuple[int, int, int]:
    return tuple(self.images.shape[1:])

  def subset(self, indices) -> 'ArrayDataset':
    """A new dataset holding the examples at `indices` (any numpy index)."""
    return dataclasses.replace(
        self, images=self.images[indices], labels=self.labels[indices],
        domains=None if self.domains is None else self.domains[indices])


@dataclasses.dataclass(frozen=True)
class DataInfo:
  """What a task may know about its training data before building the model."""
  num_classes: int
  image_shape: tuple[int, int, int]
  num_train_examples: int
  class_names: Sequence[str] = ()
