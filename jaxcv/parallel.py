"""Device mesh, sharding rules and host-to-global batch transfer.

One code path for 1 CPU, 8 fake CPU devices, a GPU and a multi-host cluster: the mesh has the
named axes (data, fsdp, tensor); batches are split over data x fsdp; parameters follow regex rules
from the config (replicated unless a rule says otherwise), as in big_vision and maxdiffusion.
"""

from __future__ import annotations

import math
import re
from typing import Any, Sequence

import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec as P

from jaxcv.errors import ConfigError

AXES = ('data', 'fsdp', 'tensor')
BATCH_AXES = ('data', 'fsdp')


def make_mesh(mesh_config, devices: Sequence[jax.Device] | None = None) -> Mesh:
  """Builds the (data, fsdp, tensor) mesh; one axis may be -1 to take the remaining devices."""
  devices = list(devices if devices is not None else jax.devices())
  sizes = [int(mesh_config[a]) for a in AXES]
  fixed = math.prod(s for s in sizes if s != -1)
  if sizes.count(-1) > 1:
    raise ConfigError(f'only one mesh axis may be -1, got {dict(zip(AXES, sizes))}')
  if -1 in sizes:
    if len(devices) % fixed:
      raise ConfigError(f'{len(devices)} devices do not divide into mesh {dict(zip(AXES, sizes))}')
    sizes[sizes.index(-1)] = len(devices) // fixed
  if math.prod(sizes) != len(devices):
    raise ConfigError(f'mesh {dict(zip(AXES, sizes))} needs {math.prod(sizes)} devices, '
                      f'{len(devices)} are present')
  # Auto axes: models carry no sharding annotations; XLA propagates the shardings we give.
  return jax.make_mesh(tuple(sizes), AXES, axis_types=(AxisType.Auto,) * len(AXES),
                       devices=devices)


def batch_sharding(mesh: Mesh) -> NamedSharding:
  """Leading (batch) dimension split over data x fsdp; other dimensions whole."""
  return NamedSharding(mesh, P(BATCH_AXES))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def batch_divisor(mesh: Mesh) -> int:
  return mesh.shape['data'] * mesh.shape['fsdp']


def check_batch_size(batch_size: int, mesh: Mesh, what: str = 'batch_size') -> None:
  divisor = batch_divisor(mesh)
  if batch_size % divisor:
    raise ConfigError(f'{what}={batch_size} is not divisible by the {divisor} devices of the '
                      f'data x fsdp mesh axes; choose a multiple of {divisor}')


def path_to_str(path) -> str:
  """'params/stage1/conv/kernel'-style name of a pytree path, for regex rules."""
  parts = []
  for key in path:
    for attr in ('key', 'name', 'idx'):
      if hasattr(key, attr):
        parts.append(str(getattr(key, attr)))
        break
    else:
      parts.append(str(key))
  return '/'.join(parts)


def _fsdp_spec(shape: tuple[int, ...], fsdp_size: int) -> P:
  """Shards the largest dimension divisible by the fsdp axis; replicates small or odd arrays."""
  if fsdp_size == 1 or not shape:
    return P()
  for dim in sorted(range(len(shape)), key=lambda d: -shape[d]):
    if shape[dim] % fsdp_size == 0 and shape[dim] >= fsdp_size:
      spec = [None] * len(shape)
      spec[dim] = 'fsdp'
      return P(*spec)
  return P()


def spec_for(name: str, shape: tuple[int, ...], rules, mesh: Mesh) -> P:
  for pattern, rule in rules:
    if re.search(pattern, name):
      if rule in (None, 'replicate'):
        return P()
      if rule == 'fsdp':
        return _fsdp_spec(shape, mesh.shape['fsdp'])
      rule = tuple(rule)
      if len(rule) != len(shape):
        raise ConfigError(f'sharding rule {rule} for {name} has {len(rule)} entries; '
                          f'the array has shape {shape}')
      return P(*rule)
  return P()


def state_shardings(abstract_tree: Any, rules, mesh: Mesh) -> Any:
  """NamedShardings for every leaf of an abstract pytree, chosen by the first matching rule.

  Optimizer-state leaves carry the parameter path in theirs (e.g. .../mu/stage1/conv/kernel),
  so one rule covers a parameter and its optimizer moments.
  """
  def leaf_sharding(path, leaf):
    shape = tuple(getattr(leaf, 'shape', ()))
    return NamedSharding(mesh, spec_for(path_to_str(path), shape, rules, mesh))
  return jax.tree_util.tree_map_with_path(leaf_sharding, abstract_tree)


def host_to_global(host_batch: Any, sharding: NamedSharding) -> Any:
  """Assembles each process's slice of the batch into one global jax.Array per leaf."""
  return jax.tree.map(
      lambda x: jax.make_array_from_process_local_data(sharding, np.asarray(x)), host_batch)
