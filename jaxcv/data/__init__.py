"""Datasets: named sources resolved from a data directory, and the loaders that feed the loop.

- `load_dataset(name, split, data_dir)` -> ArrayDataset (registry.py; formats in sources.py).
- `open_train_data(config)` -> (training data, DataInfo): decoded in memory for the device
  loader, or a lazy record source (record_sources.py) for streaming.
- `build_train_loader(config, data, mesh)`: the device-resident loader for small datasets
  (device_loader.py) or the grain host pipeline for large ones (streaming.py). Both give batch
  number `step` as a pure function of (seed, step), which is what makes resuming exact.
"""

from __future__ import annotations

from typing import Union

import numpy as np
from jax.sharding import Mesh

from jaxcv import parallel
from jaxcv.data.dataset import ArrayDataset, DataInfo
from jaxcv.data.device_loader import DeviceLoader
from jaxcv.data.record_sources import RecordSource, SubsetRecords, open_records
from jaxcv.data.registry import load_dataset
from jaxcv.errors import ConfigError


class StreamingInputs:
  """Host batches from grain, assembled into global arrays; the step just reads them."""

  def __init__(self, source, batch_size: int, seed: int, mesh: Mesh):
    from jaxcv.data.streaming import StreamingLoader  # pylint: disable=g-import-not-at-top
    parallel.check_batch_size(batch_size, mesh)
    self._loader = StreamingLoader(source, batch_size, seed=seed)
    self._sharding = parallel.batch_sharding(mesh)
    self._iterator, self._next_step = None, None
    self.steps_per_epoch = self._loader.steps_per_epoch

  def inputs(self, step: int):
    if self._iterator is None or step != self._next_step:
      if self._iterator is not None:
        self._iterator.close()  # Stops its reader threads now, not at garbage collection.
      self._iterator = self._loader.iterate(step)  # (Re)start exactly at `step`.
    self._next_step = step + 1
    batch = {k: v.astype(np.int32) if v.dtype == np.int64 else v  # jax defaults to 32 bits.
             for k, v in next(self._iterator).items()}
    return parallel.host_to_global(batch, self._sharding)

  def get_batch(self, batch, step):
    del step
    return batch

  def close(self) -> None:
    if self._iterator is not None:
      self._iterator.close()
      self._iterator = None


def open_train_data(config) -> tuple[Union[ArrayDataset, RecordSource], DataInfo]:
  """The training split, decoded in memory for the device loader or as a lazy record source for
  streaming, with what the task needs to know about it."""
  data = config.data
  open_split = load_dataset if data.loader == 'device' else open_records
  train = open_split(data.name, data.train_split, data.data_dir, data.image_size)
  image_shape, class_names = train.image_shape, train.class_names
  if data.train_examples and data.train_examples < len(train):
    # A seeded random subset: datasets stored class by class would otherwise lose classes.
    keep = np.sort(np.random.default_rng(config.seed).permutation(len(train))[
        :data.train_examples])
    train = train.subset(keep) if isinstance(train, ArrayDataset) else SubsetRecords(train, keep)
  info = DataInfo(num_classes=len(class_names), image_shape=tuple(image_shape),
                  num_train_examples=len(train), class_names=tuple(class_names))
  return train, info


def build_train_loader(config, train: Union[ArrayDataset, RecordSource], mesh: Mesh):
  balance_domains = bool(config.data.get('balance_domains', False))
  if config.data.loader == 'device':
    return DeviceLoader(train, config.batch_size, config.seed, mesh, balance_domains)
  if balance_domains:
    raise ConfigError("data.balance_domains needs data.loader='device'")
  return StreamingInputs(train, config.batch_size, config.seed, mesh)
