"""Random-access record sources for the streaming loader (grain's RandomAccessDataSource).

Large datasets are not decoded into memory: an image-folder tree or a tfds-prepared dataset is
opened as a source that decodes one record at a time, on grain's reader threads. Small named
datasets are wrapped from memory. Each source also says what the task needs to build its model.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from jaxcv.data import registry, sources
from jaxcv.data.dataset import ArrayDataset
from jaxcv.errors import DatasetNotFoundError


class RecordSource:
  """Base: `len(source)`, `source[i] -> {'image': uint8 HWC, 'label': int}`, and metadata."""
  class_names: Sequence[str]

  def __len__(self) -> int:
    raise NotImplementedError

  def __getitem__(self, index: int) -> dict[str, Any]:
    raise NotImplementedError

  @property
  def image_shape(self) -> tuple[int, int, int]:
    return tuple(self[0]['image'].shape)


class ArrayRecords(RecordSource):
  """An in-memory ArrayDataset, record by record."""

  def __init__(self, dataset: ArrayDataset):
    self.dataset = dataset
    self.class_names = dataset.class_names

  def __len__(self) -> int:
    return len(self.dataset)

  def __getitem__(self, index: int) -> dict[str, Any]:
    return {'image': self.dataset.images[index], 'label': int(self.dataset.labels[index])}


class ImageFolderRecords(RecordSource):
  """`root/<class>/<image>` files, decoded (and resized) when read."""

  def __init__(self, root: Path, image_size=None):
    paths, labels, self.class_names = sources.list_image_folder(root)
    if not paths:
      raise DatasetNotFoundError(f'no images in {root} (expected {root}/<class>/<image>)')
    self._files = sources.ImageFileSource(paths, labels, image_size)

  def __len__(self) -> int:
    return len(self._files)

  def __getitem__(self, index: int) -> dict[str, Any]:
    return self._files[index]


class TfdsRecords(RecordSource):
  """A tfds-prepared dataset read with `tfds.data_source` (no TensorFlow), resized on read."""

  def __init__(self, name: str, split: str, data_dir: Optional[str], image_size=None):
    self._source = sources.tfds_random_access_source(name, split, data_dir)
    self._size = sources.normalize_size(image_size)
    self.class_names = self._source.dataset_info.features['label'].names

  def __len__(self) -> int:
    return len(self._source)

  def __getitem__(self, index: int) -> dict[str, Any]:
    record = self._source[index]
    image = np.asarray(record['image'])
    if self._size is not None and image.shape[:2] != self._size:
      image = sources.resize_array(image, self._size)
    return {'image': image, 'label': int(record['label'])}


class SubsetRecords(RecordSource):
  """The records of `source` at `indices`."""

  def __init__(self, source: RecordSource, indices: np.ndarray):
    self._source, self._indices = source, np.asarray(indices)
    self.class_names = source.class_names

  def __len__(self) -> int:
    return len(self._indices)

  def __getitem__(self, index: int) -> dict[str, Any]:
    return self._source[int(self._indices[index])]


def open_records(name: str, split: str, data_dir: Optional[str] = None,
                 image_size=None) -> RecordSource:
  """A record source for `name` (same names as load_dataset); lazy for folder: and tfds:."""
  data_dir = data_dir or os.environ.get(registry.DATA_DIR_ENV) or None
  kind, _, arg = name.partition(':')
  if kind == 'folder' and arg:
    root = registry.locate(arg, None if data_dir is None else Path(data_dir))
    return ImageFolderRecords(root if split == 'all' else root / split, image_size)
  if kind == 'tfds' and arg:
    return TfdsRecords(arg, split, data_dir, image_size)
  return ArrayRecords(registry.load_dataset(name, split, data_dir, image_size))
