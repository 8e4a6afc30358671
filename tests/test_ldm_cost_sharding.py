"""Cost model (XLA FLOPs, parameter counts) and FSDP sharding rules of the LDM UNet family."""

import math

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest
from jax.sharding import PartitionSpec as P

from jaxcv import parallel
from jaxcv.diffusion import cost, sharding
from jaxcv.models.autoencoder import KLAutoencoder
from jaxcv.models.unet import PAPER_TABLE1, sd_unet


def test_xla_counts_a_multiply_add_as_two_flops():
  a = jax.ShapeDtypeStruct((16, 32), jnp.float32)
  b = jax.ShapeDtypeStruct((32, 8), jnp.float32)
  assert cost.xla_flops(jax.jit(jnp.matmul).lower(a, b)) == 2 * 16 * 32 * 8


@pytest.fixture(scope='module')
def rows():
  rows = cost.paper_rows([96], steps=(4, 20), alt_context_dim=None, log=lambda _: None)
  return {r['width']: r for r in rows}


def test_cost_of_members_matches_the_paper(rows):
  # The paper's GFLOPs (64x64x4 fp32 latent) agree with XLA's count within 0.5%.
  for width in (96, 320):
    assert rows[width]['gflops'] == pytest.approx(PAPER_TABLE1[width]['gflops'], rel=5e-3)
    assert rows[width]['norm_cost'] == pytest.approx(PAPER_TABLE1[width]['norm_cost'], abs=6e-3)
  assert rows[320]['params'] == 859_520_964  # SD 1.5 with its 768-dim context.
  # A 1024-dim context gives the paper's counts (83M, 866M).
  for width in (96, 320):
    variables = cost.abstract_variables(sd_unet(width, context_dim=1024))
    assert f"{round(cost.count_params(variables) / 1e6)}M" == PAPER_TABLE1[width]['params']
  assert rows[96]['sampling_cost'][20] == pytest.approx(20 * rows[96]['norm_cost'])
  table = cost.markdown(list(rows.values()))
  assert '| 96 | 81.5M |' in table and '| 320 | 859.5M |' in table


def test_cost_of_a_small_member_grows_with_width():
  small = cost.small_rows(widths=(32,), reference=64, steps=(10,))
  assert [r['width'] for r in small] == [32, 64]
  assert small[0]['gflops'] < small[1]['gflops'] and small[1]['norm_cost'] == 1.0
  assert 2.5 < small[1]['params'] / small[0]['params'] < 4.5  # Roughly c^2.


def _fsdp_mesh():
  return parallel.make_mesh(ml_collections.ConfigDict(dict(data=1, fsdp=8, tensor=1)))


def _abstract_train_state(model, image_shape, context_shape=None):
  """Abstract params, AdamW moments and an EMA copy, as train.py builds them (nothing allocated)."""
  def init():
    x = jnp.zeros((1, *image_shape))
    args = (x,) if context_shape is None else (x, jnp.zeros((1,)), jnp.zeros((1, *context_shape)))
    params = model.init(jax.random.key(0), *args)['params']
    return {'params': params, 'opt_state': optax.adamw(1e-4).init(params), 'ema_params': params}
  return jax.eval_shape(init)


@pytest.mark.parametrize('width', [320, 768])
def test_fsdp_rules_shard_the_big_members(width):
  mesh = _fsdp_mesh()
  state = _abstract_train_state(sd_unet(width), (64, 64, 4), (77, 768))
  rules = sharding.unet_fsdp_rules()
  shardings = parallel.state_shardings(state, rules, mesh)
  for (path, leaf), spec in zip(jax.tree_util.tree_flatten_with_path(state)[0],
                                [s.spec for s in jax.tree.leaves(shardings)]):
    name = parallel.path_to_str(path)
    if math.prod(leaf.shape) >= 1 << 16:
      assert 'fsdp' in spec, (name, leaf.shape, spec)
    if name.endswith('bias') or name.endswith('scale'):
      assert spec == P(), name
  summary = sharding.report(state, rules, mesh)
  assert summary.large_replicated == ()
  assert summary.device_fraction == pytest.approx(1 / 8, rel=0.01)
  params = sum(math.prod(x.shape) for x in jax.tree.leaves(state['params']))
  # fp32 params, two Adam moments and the EMA (+ Adam's int32 step count).
  assert summary.total_bytes == 4 * params * 4 + 4
  if width == 768:
    assert summary.max_device_bytes < 10.5e9  # The 5B member's training state on one of 8.


def test_fsdp_rules_cover_the_autoencoder():
  state = _abstract_train_state(KLAutoencoder(), (64, 64, 3))
  summary = sharding.report(state, sharding.unet_fsdp_rules(), _fsdp_mesh())
  assert summary.large_replicated == ()
  assert summary.device_fraction == pytest.approx(1 / 8, rel=0.01)


def test_sharded_init_places_each_shard_on_its_device():
  # What train.py does: jit(init, out_shardings) of the abstract state. A deterministic fill
  # stands in for the random init, which compiles slowly on CPU.
  model = sd_unet(16, channel_mult=(1, 2), num_res_blocks=1, attention_levels=(0,),
                  num_groups=8, context_dim=16)
  args = (jnp.zeros((1, 8, 8, 4)), jnp.zeros((1,)), jnp.zeros((1, 3, 16)))
  abstract = jax.eval_shape(model.init, jax.random.key(0), *args)['params']
  init = lambda: jax.tree.map(
      lambda s: jnp.arange(math.prod(s.shape), dtype=s.dtype).reshape(s.shape), abstract)
  mesh = _fsdp_mesh()
  shardings = parallel.state_shardings(abstract, sharding.unet_fsdp_rules(), mesh)
  params = jax.jit(init, out_shardings=shardings)()
  kernel = params['down_1_res_0']['conv_1']['kernel']  # (3, 3, 32, 32)
  assert kernel.sharding.spec == P(None, None, 'fsdp', None)
  assert {s.data.shape for s in kernel.addressable_shards} == {(3, 3, 4, 32)}
  assert len(kernel.sharding.device_set) == 8
  np.testing.assert_array_equal(kernel, np.arange(3 * 3 * 32 * 32).reshape(3, 3, 32, 32))
  bias = params['down_1_res_0']['conv_1']['bias']
  assert bias.sharding.spec == P() and bias.addressable_shards[0].data.shape == (32,)
