"""Datasets: named sources resolved from a data directory, and the loaders that feed the loop.

- `load_dataset(name, split, data_dir)` -> ArrayDataset (registry.py; formats in sources.py).
- `build_train_loader(config, dataset, mesh)`: the device-resident loader for small datasets
  (device_loader.py) or the grain host pipeline for large ones (streaming.py). Both give batch
  number `step` as a pure function of (seed, step), which is what makes resuming exact.
"""

from __future__ import annotations

from jax.sharding import Mesh

from jaxcv import parallel
from jaxcv.data.dataset import ArrayDataset
from jaxcv.data.device_loader import DeviceLoader
from jaxcv.data.registry import load_dataset


class _ArraySource:
  """An ArrayDataset seen as a random-access record source (grain's protocol)."""

  def __init__(self, dataset: ArrayDataset):
    self._dataset = dataset

  def __len__(self) -> int:
    return len(self._dataset)

  def __getitem__(self, index: int) -> dict:
    return {'image': self._dataset.images[index], 'label': self._dataset.labels[index]}


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
    return parallel.host_to_global(next(self._iterator), self._sharding)

  def get_batch(self, batch, step):
    del step
    return batch


def build_train_loader(config, dataset: ArrayDataset, mesh: Mesh):
  if config.data.loader == 'device':
    return DeviceLoader(dataset, config.batch_size, config.seed, mesh)
  return StreamingInputs(_ArraySource(dataset), config.batch_size, config.seed, mesh)
