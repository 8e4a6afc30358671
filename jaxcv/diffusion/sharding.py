"""Parameter-sharding rules for the UNet family and the KL autoencoder (FSDP over the `fsdp` axis).

The rules are `config.param_sharding` entries (regex on the parameter path, rule), read by
`jaxcv.parallel.state_shardings`: every convolution and dense kernel (and, since optimizer moments
and EMA copies carry the parameter path in theirs, their optimizer state) is split over the
`fsdp` mesh axis along its largest divisible dimension; biases and norm scales (at most 8 x 4c
floats) stay replicated. The kernels hold >99.9% of every member's parameters, so each device
keeps about 1/fsdp of the state: the 5B member (c=768) in fp32 with Adam and EMA is ~78 GB in
all, ~10 GB per device on 8 devices, and is never materialised whole (train.py initialises it
with jit out_shardings).

  config.mesh.fsdp = 8; config.param_sharding = sharding.unet_fsdp_rules()

With mesh.fsdp = 1 the same rules replicate everything, so small members can keep them.
"""

from __future__ import annotations

import dataclasses
import math

import jax
from jax.sharding import Mesh

from jaxcv import parallel

# Conv / Dense kernels and embedding tables (a class-label embedding) are sharded; the rest is
# small and replicated. `(^|/)` anchors on a path component, so '.../kernel' but not 'my_kernel'.
UNET_FSDP_RULES: tuple[tuple[str, str], ...] = (
    (r'(^|/)(kernel|embedding)$', 'fsdp'),
    (r'.*', 'replicate'),
)


def unet_fsdp_rules() -> tuple[tuple[str, str], ...]:
  """`config.param_sharding` for FSDP training of any UNet member or the KL autoencoder."""
  return UNET_FSDP_RULES


@dataclasses.dataclass(frozen=True)
class ShardingReport:
  """How a (possibly abstract) state tree is laid out by a set of rules on a mesh."""
  total_bytes: int
  max_device_bytes: int  # Bytes on the most loaded device.
  sharded_bytes: int  # Bytes of leaves split over at least one mesh axis.
  large_replicated: tuple[str, ...]  # Paths of replicated leaves of >= min_size elements.

  @property
  def device_fraction(self) -> float:
    """Per-device bytes over total bytes: 1/num_devices at best, 1 when replicated."""
    return self.max_device_bytes / max(self.total_bytes, 1)


def report(abstract_tree, rules, mesh: Mesh, min_size: int = 1 << 16) -> ShardingReport:
  """Bytes per device under `rules` without allocating anything (shapes and dtypes only)."""
  shardings = parallel.state_shardings(abstract_tree, rules, mesh)
  total = device = sharded = 0
  large_replicated = []
  leaves = jax.tree_util.tree_flatten_with_path(abstract_tree)[0]
  for (path, leaf), sharding in zip(leaves, jax.tree.leaves(shardings)):
    shape = tuple(leaf.shape)
    nbytes = math.prod(shape) * leaf.dtype.itemsize
    shard_bytes = math.prod(sharding.shard_shape(shape)) * leaf.dtype.itemsize
    total += nbytes
    device += shard_bytes
    if shard_bytes < nbytes:
      sharded += nbytes
    elif math.prod(shape) >= min_size:
      large_replicated.append(parallel.path_to_str(path))
  return ShardingReport(total, device, sharded, tuple(large_replicated))
