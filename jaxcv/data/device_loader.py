"""The fast path for small datasets: the whole split lives on the accelerator as uint8.

Batch number `step` is a pure function of (seed, step): a fresh permutation per epoch, drawn
inside the jitted step, so there is no host round trip per step and a resumed run replays exactly
the batches an uninterrupted run would have seen.

With `balance_domains` (config.data.balance_domains) every batch is batch_size / D examples from
each of the D domains present, concatenated domain by domain, as DomainBed draws one minibatch per
training environment. Each domain has its own epochs (len(domain) // (batch_size / D) steps, the
remainder dropped) and its own permutation per epoch, keyed by (seed, domain, epoch).
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
  """Serves global training batches gathered on device from a replicated uint8 copy.

  The batch also holds 'domain' (int32 ids) when the dataset has domain ids.
  """

  def __init__(self, dataset: ArrayDataset, batch_size: int, seed: int, mesh: Mesh,
               balance_domains: bool = False):
    if len(dataset) < batch_size:
      raise ConfigError(f'batch_size={batch_size} is larger than the {len(dataset)} training '
                        'examples')
    parallel.check_batch_size(batch_size, mesh)
    self.num_examples = len(dataset)
    self.batch_size = batch_size
    self.seed = seed
    self.steps_per_epoch = len(dataset) // batch_size  # The remainder is dropped each epoch.
    self.domain_groups = None  # Balanced: ((offset, count), ...) of each domain's block.
    if balance_domains:
      dataset = self._group_by_domain(dataset)
    self._batch_sharding = parallel.batch_sharding(mesh)
    replicated = parallel.replicated(mesh)
    self.arrays = {
        'image': jax.device_put(dataset.images, replicated),
        'label': jax.device_put(np.asarray(dataset.labels, np.int32), replicated),
    }
    if dataset.domains is not None:
      self.arrays['domain'] = jax.device_put(np.asarray(dataset.domains, np.int32), replicated)

  def _group_by_domain(self, dataset: ArrayDataset) -> ArrayDataset:
    """The dataset reordered domain by domain (stable), recording each domain's block."""
    if dataset.domains is None:
      raise ConfigError('data.balance_domains needs a training set with domain ids (e.g. pacs '
                        "split 'all', or 'domainbed(test=...):NAME'), this one has none")
    ids, counts = np.unique(dataset.domains, return_counts=True)
    if self.batch_size % len(ids):
      raise ConfigError(f'data.balance_domains: batch_size={self.batch_size} must be divisible '
                        f'by the {len(ids)} training domains')
    per_domain = self.batch_size // len(ids)
    if counts.min() < per_domain:
      raise ConfigError(f'data.balance_domains: a domain has {counts.min()} examples, fewer '
                        f'than the {per_domain} per batch')
    self.per_domain = per_domain
    offsets = np.concatenate([[0], np.cumsum(counts)[:-1]])
    self.domain_groups = tuple((int(o), int(c)) for o, c in zip(offsets, counts))
    self.steps_per_epoch = int(counts.min()) // per_domain  # DomainBed: the smallest domain's.
    return dataset.subset(np.argsort(dataset.domains, kind='stable'))

  def inputs(self, step: int):
    """What the jitted step receives for `step`: always the same on-device arrays."""
    del step
    return self.arrays

  def batch_indices(self, step: jax.Array) -> jax.Array:
    """Indices into the loader's arrays of batch `step` (traceable)."""
    if self.domain_groups is None:
      epoch, index = jnp.divmod(step, self.steps_per_epoch)
      key = jax.random.fold_in(jax.random.key(self.seed), epoch)
      order = jax.random.permutation(key, self.num_examples)
      return jax.lax.dynamic_slice_in_dim(order, index * self.batch_size, self.batch_size)
    parts = []
    for domain, (offset, count) in enumerate(self.domain_groups):
      epoch, index = jnp.divmod(step, count // self.per_domain)
      key = jax.random.fold_in(jax.random.fold_in(jax.random.key(self.seed), domain), epoch)
      order = jax.random.permutation(key, count)
      parts.append(offset + jax.lax.dynamic_slice_in_dim(order, index * self.per_domain,
                                                         self.per_domain))
    return jnp.concatenate(parts)

  def get_batch(self, arrays, step: jax.Array):
    """Traced inside jit: the batch for `step`, sharded over the batch mesh axes."""
    ids = jax.lax.with_sharding_constraint(self.batch_indices(step), self._batch_sharding)
    return {name: jnp.take(array, ids, axis=0) for name, array in arrays.items()}

  def close(self) -> None:
    """Nothing to release: the arrays go with the loader."""
