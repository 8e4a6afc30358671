"""Mesh construction and regex parameter-sharding rules."""

import jax
import ml_collections
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from jaxcv import parallel
from jaxcv.errors import ConfigError


def _mesh(data=-1, fsdp=1, tensor=1, devices=None):
  return parallel.make_mesh(ml_collections.ConfigDict(dict(data=data, fsdp=fsdp, tensor=tensor)),
                            devices)


def test_mesh_fills_the_minus_one_axis():
  assert dict(_mesh().shape) == {'data': 8, 'fsdp': 1, 'tensor': 1}
  assert dict(_mesh(data=2, fsdp=-1).shape) == {'data': 2, 'fsdp': 4, 'tensor': 1}
  assert dict(_mesh(devices=jax.devices()[:1]).shape) == {'data': 1, 'fsdp': 1, 'tensor': 1}


def test_mesh_errors():
  with pytest.raises(ConfigError, match='needs 6 devices'):
    _mesh(data=3, fsdp=2)
  with pytest.raises(ConfigError, match='only one mesh axis'):
    _mesh(data=-1, fsdp=-1)
  with pytest.raises(ConfigError, match='do not divide'):
    _mesh(data=-1, fsdp=3)


def test_batch_size_check():
  mesh = _mesh(data=4, fsdp=2)
  parallel.check_batch_size(16, mesh)
  with pytest.raises(ConfigError, match='not divisible by the 8 devices'):
    parallel.check_batch_size(12, mesh)


def test_rules_first_match_wins_and_fsdp_picks_a_divisible_dim():
  mesh = _mesh(data=2, fsdp=4)
  rules = (('head', 'replicate'), ('kernel', 'fsdp'), ('.*', 'replicate'))
  tree = {'conv': {'kernel': jax.ShapeDtypeStruct((3, 3, 6, 64), np.float32),
                   'bias': jax.ShapeDtypeStruct((64,), np.float32)},
          'head': {'kernel': jax.ShapeDtypeStruct((64, 10), np.float32)},
          'odd': {'kernel': jax.ShapeDtypeStruct((3, 5), np.float32)}}
  shardings = parallel.state_shardings(tree, rules, mesh)
  assert shardings['conv']['kernel'].spec == P(None, None, None, 'fsdp')
  assert shardings['conv']['bias'].spec == P()
  assert shardings['head']['kernel'].spec == P()
  assert shardings['odd']['kernel'].spec == P()  # Nothing divisible by 4: replicated.


def test_explicit_rule_must_match_rank():
  mesh = _mesh(data=2, fsdp=4)
  tree = {'w': jax.ShapeDtypeStruct((8, 8), np.float32)}
  assert parallel.state_shardings(tree, (('w', (None, 'fsdp')),), mesh)['w'].spec == P(None, 'fsdp')
  with pytest.raises(ConfigError, match='has 1 entries'):
    parallel.state_shardings(tree, (('w', ('fsdp',)),), mesh)


def test_host_to_global_assembles_the_batch():
  mesh = _mesh()
  batch = {'x': np.arange(32.0).reshape(16, 2)}
  out = parallel.host_to_global(batch, parallel.batch_sharding(mesh))
  np.testing.assert_array_equal(out['x'], batch['x'])
  assert len(out['x'].sharding.device_set) == 8
