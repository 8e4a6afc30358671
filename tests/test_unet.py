"""The SD-1.5-style UNet family (jaxcv/models/unet.py): layout, counts, conditioning, dtypes."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxcv.errors import ConfigError
from jaxcv.models import unet as unet_lib
from jaxcv.models.unet import UNet, sd_unet, small_unet


def _abstract_params(model, image_shape, context_shape=None):
  x = jax.ShapeDtypeStruct((1, *image_shape), jnp.float32)
  t = jax.ShapeDtypeStruct((1,), jnp.float32)
  context = None if context_shape is None else jax.ShapeDtypeStruct((1, *context_shape),
                                                                    jnp.float32)
  return jax.eval_shape(model.init, jax.random.key(0), x, t, context)['params']


def _count(tree):
  return sum(math.prod(x.shape) for x in jax.tree.leaves(tree))


def test_c320_is_the_sd15_unet():
  # diffusers' UNet2DConditionModel with SD 1.5's config has 859,520,964 parameters.
  params = _abstract_params(sd_unet(320), (64, 64, 4), (77, 768))
  assert _count(params) == 859_520_964


def test_c320_with_a_1024_context_is_the_sd2_unet():
  # SD 2.x's UNet (a 1024-dim OpenCLIP context) has 865,910,724 parameters in diffusers; its
  # linear proj_in/proj_out and per-level head counts leave the count as SD 1.5's layout gives.
  params = _abstract_params(sd_unet(320, context_dim=1024), (64, 64, 4), (77, 1024))
  assert _count(params) == 865_910_724


def test_transformer_blocks_sit_where_sd15_has_them():
  params = _abstract_params(sd_unet(32, num_groups=8), (64, 64, 4), (77, 768))
  transformers = sorted(k for k in params if 'attn' in k)
  expected = sorted([f'down_{l}_attn_{i}' for l in (0, 1, 2) for i in (0, 1)]
                    + [f'up_{l}_attn_{i}' for l in (0, 1, 2) for i in (0, 1, 2)] + ['mid_attn'])
  assert transformers == expected  # 16 transformer blocks, as in SD 1.5.
  block = params['down_1_attn_0']['block']
  assert set(block) == {'norm_self', 'self_attn', 'norm_cross', 'cross_attn', 'norm_ff', 'ff'}
  assert block['cross_attn']['key']['kernel'].shape == (768, 64)  # Context -> level width 2c.
  assert block['ff']['proj']['kernel'].shape == (64, 2 * 4 * 64)  # GEGLU: value and gate.
  res_blocks = [k for k in params if '_res_' in k]
  assert len(res_blocks) == 4 * 2 + 4 * 3 + 2  # Down, up (one more per level), mid.
  assert params['time_embed_1']['kernel'].shape == (128, 128)  # 4c.


def test_without_context_there_is_no_cross_attention():
  params = _abstract_params(sd_unet(32, num_groups=8, context_dim=None), (16, 16, 4))
  assert 'cross_attn' not in params['mid_attn']['block']
  with_context = _abstract_params(sd_unet(32, num_groups=8), (16, 16, 4), (5, 768))
  # Each of the 16 blocks (5 at each of the widths 32, 64, 128, and the mid one at 128) loses its
  # cross-attention: query (w x w), key and value (768 x w), output (w x w + w), norm (2w).
  widths = [32] * 5 + [64] * 5 + [128] * 6
  assert _count(with_context) - _count(params) == sum(2 * 768 * w + 2 * w * w + 3 * w
                                                      for w in widths)


def test_small_variant_layout():
  params = _abstract_params(small_unet(128), (32, 32, 3))
  assert sorted(k for k in params if 'attn' in k) == [
      'down_1_attn_0', 'down_1_attn_1', 'mid_attn', 'up_1_attn_0', 'up_1_attn_1', 'up_1_attn_2']
  assert params['down_3_res_0']['conv_0']['kernel'].shape == (3, 3, 256, 256)  # [1, 2, 2, 2].
  assert params['conv_out']['kernel'].shape[-1] == 3
  # DDPM's CIFAR-10 UNet (Ho et al. 2020) has 35,746,307 parameters; small_unet is its layout
  # with SD transformer blocks (no context) instead of its 6 single-head attention blocks, all at
  # 2c = 256 channels. DDPM's block: GroupNorm (2C) + q, k, v, out 1x1 convs (4 (C^2 + C)).
  # SD's (each norm 2C): GroupNorm, proj_in (C^2 + C), LayerNorm, q k v (3 C^2), out (C^2 + C),
  # LayerNorm, GEGLU (8 C^2 + 8 C), its output (4 C^2 + C), proj_out (C^2 + C).
  c = 256
  ddpm_attention = 2 * c + 4 * (c * c + c)
  sd_transformer = 18 * c * c + 18 * c
  assert _count(params) == 35_746_307 + 6 * (sd_transformer - ddpm_attention)


def test_timestep_embedding_is_cos_then_sin():
  t = jnp.array([0.0, 10.0, 999.0])
  emb = unet_lib.timestep_embedding(t, 8)
  freqs = np.exp(-np.log(10_000.0) * np.arange(4) / 4)
  angles = np.asarray(t)[:, None] * freqs
  np.testing.assert_allclose(emb, np.concatenate([np.cos(angles), np.sin(angles)], -1),
                             rtol=1e-5, atol=1e-5)


def test_attention_matches_softmax_reference():
  q, k, v = (jax.random.normal(jax.random.key(i), (2, 6, 4, 8)) for i in range(3))
  scores = jnp.einsum('btnh,bsnh->bnts', q, k) / np.sqrt(8)
  expected = jnp.einsum('bnts,bsnh->btnh', jax.nn.softmax(scores, -1), v)
  np.testing.assert_allclose(unet_lib.attention(q, k, v), expected, rtol=1e-5, atol=1e-5)


# A tiny two-level member, so that forward and backward passes compile in seconds.
TINY = dict(base_width=16, channel_mult=(1, 2), num_res_blocks=1, attention_levels=(0,),
            num_groups=8, context_dim=12)


def _random_variables(model, x, t, context):
  """Random float32 variables of the right shapes without compiling `init` (slow on CPU)."""
  abstract = jax.eval_shape(model.init, jax.random.key(0), x, t, context)
  rng = np.random.default_rng(0)
  return jax.tree.map(lambda s: jnp.asarray(0.2 * rng.standard_normal(s.shape), s.dtype),
                      abstract)


def _inputs(n=2, size=8, channels=4):
  x = jax.random.normal(jax.random.key(1), (n, size, size, channels))
  t = jnp.array([3.0, 700.0])[:n]
  context = jax.random.normal(jax.random.key(2), (n, 5, 12))
  return x, t, context


def test_forward_depends_on_inputs_and_is_float32_under_bf16():
  model = UNet(**TINY)
  x, t, context = _inputs()
  variables = _random_variables(model, x, t, context)
  apply = jax.jit(model.apply)
  out = apply(variables, x, t, context)
  assert out.shape == x.shape and out.dtype == jnp.float32
  assert not np.allclose(apply(variables, x, t[::-1], context), out, atol=1e-4)
  assert not np.allclose(apply(variables, x, t, context[::-1]), out, atol=1e-4)
  bf16 = jax.jit(model.clone(dtype=jnp.bfloat16).apply)(variables, x, t, context)
  assert bf16.dtype == jnp.float32
  assert jax.tree.leaves(jax.tree.map(lambda p: p.dtype == jnp.float32, variables)) == \
      [True] * len(jax.tree.leaves(variables))
  np.testing.assert_allclose(bf16, out, atol=0.1 * float(jnp.std(out)) + 0.05)


def test_remat_gives_the_same_gradients_with_dropout():
  # One level, a transformer only in the mid block: compiles fastest.
  model = UNet(**{**TINY, 'channel_mult': (1,), 'attention_levels': ()}, dropout=0.2)
  x, t, context = _inputs()
  variables = _random_variables(model, x, t, context)

  def loss(params, module):
    out = module.apply({'params': params}, x, t, context, train=True,
                       rngs={'dropout': jax.random.key(3)})
    return jnp.mean(jnp.square(out))

  grads = jax.jit(jax.grad(loss), static_argnums=1)(variables['params'], model)
  remat_grads = jax.jit(jax.grad(loss), static_argnums=1)(variables['params'],
                                                          model.clone(remat=True))
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6),
               grads, remat_grads)
  assert float(jnp.abs(grads['down_0_res_0']['conv_1']['kernel']).sum()) > 0


def test_image_conditioned_input_channels():
  model = UNet(**{**TINY, 'in_channels': 8})
  params = _abstract_params(model, (8, 8, 8), (5, 12))
  assert params['conv_in']['kernel'].shape == (3, 3, 8, 16)
  assert params['conv_out']['kernel'].shape == (3, 3, 16, 4)


@pytest.mark.parametrize('model,shape,context,message', [
    (UNet(**TINY), (1, 5, 5, 4), (1, 5, 12), 'divisible by 2'),
    (UNet(**TINY), (1, 8, 8, 3), (1, 5, 12), r'\[N, H, W, 4\]'),
    (UNet(**TINY), (1, 8, 8, 4), None, 'pass context'),
    (UNet(**TINY), (1, 8, 8, 4), (1, 5, 7), 'context must be'),
    (UNet(**{**TINY, 'base_width': 12}), (1, 8, 8, 4), (1, 5, 12), 'divisible by 8'),
])
def test_bad_inputs_fail_clearly(model, shape, context, message):
  context = None if context is None else jnp.zeros(context)
  with pytest.raises(ConfigError, match=message):
    jax.eval_shape(model.init, jax.random.key(0), jnp.zeros(shape), jnp.zeros(shape[:1]),
                   context)
