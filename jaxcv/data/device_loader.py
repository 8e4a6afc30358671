"""The fast path for small datasets: the whole split lives on the accelerator as uint8.

Batch number `step` is a pure function of (seed, step): a fresh permutation per epoch, drawn
inside the jitted step, so there is no host round trip per step and a resumed run replays exactly
the batches an uninterrupted run would have seen.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from jaxcv import parallel
from jaxcv.data.dataset import ArrayDataset
from jaxcv.errors import ConfigError


class DeviceLoader:
  """Serves global training batches gathered on device from a replicated uint8 copy."""

  def __init__(self, dataset: ArrayDataset, batch_size: int, seed: int, mesh: Mesh):
    if len(dataset) < batch_size:
      raise ConfigError(f'batch_size={batch_size} is larger than the {len(dataset)} training '
                        'examples')
    parallel.check_batch_size(batch_size, mesh)
    self.num_examples = len(dataset)
    self.batch_size = batch_size
    self.seed = seed
    self.steps_per_epoch = len(dataset) // batch_size  # The remainder is dropped each epoch.
    self._batch_sharding = parallel.batch_sharding(mesh)
    replicated = parallel.replicated(mesh)
    self.arrays = {
        'image': jax.device_put(dataset.images, replicated),
        'label': jax.device_put(np.asarray(dataset.labels, np.int32), replicated),
    }

  def inputs(self, step: int):
    """What the jitted step receives for `step`: always the same on-device arrays."""
    del step
    return self.arrays

  def get_batch(self, arrays, step: jax.Array):
    """Traced inside jit: the batch for `step`, sharded over the batch mesh axes."""
    epoch, index = jnp.divmod(step, self.steps_per_epoch)
    key = jax.random.fold_in(jax.random.key(self.seed), epoch)
    order = jax.random.permutation(key, self.num_examples)
    ids = jax.lax.dynamic_slice_in_dim(order, index * self.batch_size, self.batch_size)
    ids = jax.lax.with_sharding_constraint(ids, self._batch_sharding)
    return {name: jnp.take(array, ids, axis=0) for name, array in arrays.items()}

  def close(self) -> None:
    """Nothing to release: the arrays go with the loader."""
