"""The Stable-Diffusion-v1.5 latent UNet, parameterised by its base width (the LDM-scaling family).

Mei et al., "Bigger is not Always Better: Scaling Properties of Latent Diffusion Models"
(arXiv:2404.01367) train SD-1.5 UNets that differ only in the base channel count c: level widths
[c, 2c, 4c, 4c], two res blocks per level, a transformer block (self-attention, cross-attention
on the text context, GEGLU feed-forward) after every res block of the first three levels and in
the mid block, GroupNorm(32), 8 heads. `sd_unet(c)` builds that family (c=320 is SD 1.5's UNet:
859.5M parameters with a 768-dim context; the paper rounds to 866M); `PAPER_TABLE1` holds the
paper's Table 1 verbatim. `small_unet(c)` is the same family for 32x32 pixel data (see its
docstring). See docs/ldm_models.md for parameter counts, FLOPs and sharding rules.

The layer layout follows diffusers' UNet2DConditionModel with SD 1.5's config, so that parameter
counts match it exactly; 1x1 convolutions of the transformer's proj_in/proj_out are Dense layers
(the same parameters and arithmetic).

Module names are plain and stable (`down_1_res_0/conv_0/kernel`, `mid_attn/block/ff/proj/kernel`)
so that regex sharding rules (jaxcv/diffusion/sharding.py) can address them.
"""

from __future__ import annotations

import math
from typing import Any, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxcv.errors import ConfigError

# Table 1 of the paper, verbatim (FID-30k on COCO-14 val, 50-step DDIM, CFG 7.5). The 39M column
# is inconsistent: 25.3 / 789.3 = 0.032, not 0.07 (see docs/ldm_models.md).
PAPER_TABLE1 = {
    64: dict(params='39M', gflops=25.3, norm_cost=0.07, fid=25.30, clip=0.305),
    96: dict(params='83M', gflops=102.7, norm_cost=0.13, fid=24.30, clip=0.308),
    128: dict(params='145M', gflops=161.5, norm_cost=0.20, fid=24.18, clip=0.310),
    160: dict(params='223M', gflops=233.5, norm_cost=0.30, fid=23.76, clip=0.310),
    192: dict(params='318M', gflops=318.5, norm_cost=0.40, fid=22.83, clip=0.311),
    224: dict(params='430M', gflops=416.6, norm_cost=0.53, fid=22.35, clip=0.312),
    256: dict(params='558M', gflops=527.8, norm_cost=0.67, fid=22.15, clip=0.312),
    288: dict(params='704M', gflops=652.0, norm_cost=0.83, fid=21.82, clip=0.312),
    320: dict(params='866M', gflops=789.3, norm_cost=1.00, fid=21.55, clip=0.312),
    512: dict(params='2B', gflops=1887.5, norm_cost=2.39, fid=20.98, clip=0.312),
    768: dict(params='5B', gflops=4082.6, norm_cost=5.17, fid=20.14, clip=0.314),
}

PAPER_WIDTHS = tuple(PAPER_TABLE1)


def timestep_embedding(t: jax.Array, dim: int, max_period: float = 10_000.0) -> jax.Array:
  """Sinusoidal embedding [N, dim] of (float) timesteps, cos first as in SD 1.5.

  Frequencies span 1 .. 1/max_period, so timesteps on the 0..999 scale use the whole range;
  continuous times in [0, 1] should be multiplied by 1000 by the caller.
  """
  half = dim // 2
  freqs = jnp.exp(-math.log(max_period) * jnp.arange(half, dtype=jnp.float32) / half)
  angles = jnp.asarray(t, jnp.float32)[:, None] * freqs[None, :]
  emb = jnp.concatenate([jnp.cos(angles), jnp.sin(angles)], axis=-1)
  if dim % 2:
    emb = jnp.pad(emb, ((0, 0), (0, 1)))
  return emb


def attention(q: jax.Array, k: jax.Array, v: jax.Array,
              implementation: Optional[str] = None) -> jax.Array:
  """Multi-head attention on [B, T, heads, head_dim] through `jax.nn.dot_product_attention`.

  implementation=None picks cuDNN flash attention on a GPU for bf16/fp16 inputs whose shapes
  cuDNN accepts (its checks run at trace time), and XLA otherwise; 'xla' / 'cudnn' force one.
  """
  if implementation is None:
    if jax.default_backend() == 'gpu' and q.dtype in (jnp.bfloat16, jnp.float16):
      try:
        return jax.nn.dot_product_attention(q, k, v, implementation='cudnn')
      except (NotImplementedError, ValueError, RuntimeError):
        pass  # Unsupported head dim, cuDNN missing, ...: XLA below.
    implementation = 'xla'
  return jax.nn.dot_product_attention(q, k, v, implementation=implementation)


def _check_groups(channels: int, num_groups: int, where: str) -> None:
  if channels % num_groups:
    raise ConfigError(f'GroupNorm with {num_groups} groups needs channel counts divisible by '
                      f'{num_groups}; {where} has {channels} channels (choose base_width as a '
                      f'multiple of {num_groups} or set num_groups)')


class ResBlock(nn.Module):
  """GroupNorm-SiLU-conv, + projected timestep embedding, GroupNorm-SiLU-dropout-conv, skip."""
  features: int
  num_groups: int = 32
  dropout: float = 0.0
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, temb, train: bool = False):
    dense = lambda f, name: nn.Dense(f, dtype=self.dtype, param_dtype=jnp.float32, name=name)
    conv = lambda f, k, name: nn.Conv(f, (k, k), padding='SAME', dtype=self.dtype,
                                      param_dtype=jnp.float32, name=name)
    norm = lambda name: nn.GroupNorm(self.num_groups, epsilon=1e-5, dtype=self.dtype,
                                     param_dtype=jnp.float32, name=name)
    _check_groups(x.shape[-1], self.num_groups, self.name)
    h = conv(self.features, 3, 'conv_0')(nn.silu(norm('norm_0')(x)))
    h = h + dense(self.features, 'time_proj')(nn.silu(temb))[:, None, None, :]
    h = nn.silu(norm('norm_1')(h))
    h = nn.Dropout(self.dropout, deterministic=not train)(h)
    h = conv(self.features, 3, 'conv_1')(h)
    if x.shape[-1] != self.features:
      x = conv(self.features, 1, 'skip')(x)
    return x + h


class Attention(nn.Module):
  """Multi-head attention with bias-free q/k/v projections and a biased output projection."""
  num_heads: int
  dtype: Any = jnp.float32
  implementation: Optional[str] = None

  @nn.compact
  def __call__(self, x, context=None):
    dim = x.shape[-1]
    if dim % self.num_heads:
      raise ConfigError(f'width {dim} is not divisible by num_heads={self.num_heads}')
    context = x if context is None else context
    head_dim = dim // self.num_heads

    def project(inputs, name):
      y = nn.Dense(dim, use_bias=False, dtype=self.dtype, param_dtype=jnp.float32,
                   name=name)(inputs)
      return y.reshape(*y.shape[:-1], self.num_heads, head_dim)

    out = attention(project(x, 'query'), project(context, 'key'), project(context, 'value'),
                    self.implementation)
    out = out.reshape(*out.shape[:-2], dim)
    return nn.Dense(dim, dtype=self.dtype, param_dtype=jnp.float32, name='out')(out)


class GEGLU(nn.Module):
  """Feed-forward x -> W2 (a * gelu(b)), [a, b] = W1 x with hidden width 4 * dim (SD 1.5)."""
  mult: int = 4
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    dim = x.shape[-1]
    a, gate = jnp.split(nn.Dense(2 * self.mult * dim, dtype=self.dtype, param_dtype=jnp.float32,
                                 name='proj')(x), 2, axis=-1)
    h = a * nn.gelu(gate, approximate=False)  # PyTorch's F.gelu default is the exact erf form.
    return nn.Dense(dim, dtype=self.dtype, param_dtype=jnp.float32, name='out')(h)


class TransformerBlock(nn.Module):
  """Pre-LayerNorm self-attention, cross-attention (when there is a context) and GEGLU FF."""
  num_heads: int
  cross_attention: bool
  dtype: Any = jnp.float32
  attention_impl: Optional[str] = None

  @nn.compact
  def __call__(self, x, context=None):
    norm = lambda name: nn.LayerNorm(epsilon=1e-5, dtype=self.dtype, param_dtype=jnp.float32,
                                     name=name)
    attn = lambda name: Attention(self.num_heads, self.dtype, self.attention_impl, name=name)
    x = x + attn('self_attn')(norm('norm_self')(x))
    if self.cross_attention:
      x = x + attn('cross_attn')(norm('norm_cross')(x), context.astype(self.dtype))
    return x + GEGLU(dtype=self.dtype, name='ff')(norm('norm_ff')(x))


class SpatialTransformer(nn.Module):
  """GroupNorm, proj_in, one transformer block over the H*W tokens, proj_out, residual."""
  num_heads: int
  cross_attention: bool
  num_groups: int = 32
  dtype: Any = jnp.float32
  attention_impl: Optional[str] = None

  @nn.compact
  def __call__(self, x, context=None):
    n, height, width, dim = x.shape
    _check_groups(dim, self.num_groups, self.name)
    dense = lambda name: nn.Dense(dim, dtype=self.dtype, param_dtype=jnp.float32, name=name)
    h = nn.GroupNorm(self.num_groups, epsilon=1e-6, dtype=self.dtype, param_dtype=jnp.float32,
                     name='norm')(x)
    h = dense('proj_in')(h).reshape(n, height * width, dim)
    h = TransformerBlock(self.num_heads, self.cross_attention, self.dtype, self.attention_impl,
                         name='block')(h, context)
    return x + dense('proj_out')(h.reshape(n, height, width, dim))


class Downsample(nn.Module):
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    # PyTorch's conv(stride 2, padding 1) on even sizes: pad (1, 1), keep the top-left grid.
    return nn.Conv(x.shape[-1], (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)),
                   dtype=self.dtype, param_dtype=jnp.float32, name='conv')(x)


class Upsample(nn.Module):
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    x = jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)  # Nearest-neighbour 2x.
    return nn.Conv(x.shape[-1], (3, 3), padding='SAME', dtype=self.dtype,
                   param_dtype=jnp.float32, name='conv')(x)


class UNet(nn.Module):
  """SD-1.5-style UNet: eps/v/x predictions of the same shape as the (latent) input.

  Attributes:
    base_width: c; level widths are c * channel_mult.
    channel_mult: width multiplier of each resolution level.
    num_res_blocks: res blocks per level on the way down (one more on the way up, as in SD).
    attention_levels: indices into channel_mult whose res blocks are followed by a transformer.
    num_heads: attention heads at every level (SD 1.5: 8).
    context_dim: width of the cross-attention context; None: self-attention only.
    in_channels: input channels (4 latent channels + any concatenated condition channels).
    out_channels: output channels.
    num_groups: GroupNorm groups (every level width must be divisible by it).
    dropout: dropout rate inside the res blocks (active when train=True, needs a 'dropout' rng).
    dtype: compute dtype; parameters are float32 and the output is float32.
    remat: rematerialise each res/transformer block in the backward pass (memory for compute).
    attention_impl: None (cuDNN on GPU in bf16 where supported, else XLA), 'xla' or 'cudnn'.
  """
  base_width: int = 320
  channel_mult: tuple = (1, 2, 4, 4)
  num_res_blocks: int = 2
  attention_levels: tuple = (0, 1, 2)
  num_heads: int = 8
  context_dim: Optional[int] = 768
  in_channels: int = 4
  out_channels: int = 4
  num_groups: int = 32
  dropout: float = 0.0
  dtype: Any = jnp.float32
  remat: bool = False
  attention_impl: Optional[str] = None

  @nn.compact
  def __call__(self, x, t, context=None, *, train=False) -> jax.Array:
    self._check_inputs(x, t, context)
    res_cls, attn_cls = ResBlock, SpatialTransformer
    if self.remat:
      res_cls = nn.remat(ResBlock, static_argnums=(3,))  # Argument 3 (counting self) is train.
      attn_cls = nn.remat(SpatialTransformer)
    widths = [self.base_width * m for m in self.channel_mult]
    cross = self.context_dim is not None

    def res(features, name):
      block = res_cls(features, self.num_groups, self.dropout, self.dtype, name=name)
      return lambda h: block(h, temb, train)

    def transformer(name):
      block = attn_cls(self.num_heads, cross, self.num_groups, self.dtype, self.attention_impl,
                       name=name)
      return lambda h: block(h, context)

    # Timestep embedding: sinusoid of width c -> MLP to 4c (SD 1.5: 320 -> 1280).
    temb_dim = 4 * self.base_width
    temb = timestep_embedding(t, self.base_width)
    temb = nn.Dense(temb_dim, dtype=self.dtype, param_dtype=jnp.float32, name='time_embed_0')(temb)
    temb = nn.Dense(temb_dim, dtype=self.dtype, param_dtype=jnp.float32,
                    name='time_embed_1')(nn.silu(temb))

    h = nn.Conv(widths[0], (3, 3), padding='SAME', dtype=self.dtype, param_dtype=jnp.float32,
                name='conv_in')(jnp.asarray(x, self.dtype))
    skips = [h]
    for level, width in enumerate(widths):
      for i in range(self.num_res_blocks):
        h = res(width, f'down_{level}_res_{i}')(h)
        if level in self.attention_levels:
          h = transformer(f'down_{level}_attn_{i}')(h)
        skips.append(h)
      if level < len(widths) - 1:
        h = Downsample(self.dtype, name=f'down_{level}_downsample')(h)
        skips.append(h)

    h = res(widths[-1], 'mid_res_0')(h)
    h = transformer('mid_attn')(h)
    h = res(widths[-1], 'mid_res_1')(h)

    for level in reversed(range(len(widths))):
      for i in range(self.num_res_blocks + 1):
        h = jnp.concatenate([h, skips.pop()], axis=-1)
        h = res(widths[level], f'up_{level}_res_{i}')(h)
        if level in self.attention_levels:
          h = transformer(f'up_{level}_attn_{i}')(h)
      if level > 0:
        h = Upsample(self.dtype, name=f'up_{level}_upsample')(h)

    h = nn.silu(nn.GroupNorm(self.num_groups, epsilon=1e-5, dtype=self.dtype,
                             param_dtype=jnp.float32, name='norm_out')(h))
    h = nn.Conv(self.out_channels, (3, 3), padding='SAME', dtype=self.dtype,
                param_dtype=jnp.float32, name='conv_out')(h)
    return h.astype(jnp.float32)

  def _check_inputs(self, x, t, context) -> None:
    if x.ndim != 4 or x.shape[-1] != self.in_channels:
      raise ConfigError(f'UNet expects x of shape [N, H, W, {self.in_channels}], got {x.shape}')
    factor = 2 ** (len(self.channel_mult) - 1)
    if x.shape[1] % factor or x.shape[2] % factor:
      raise ConfigError(f'UNet with {len(self.channel_mult)} levels needs H and W divisible by '
                        f'{factor}, got {x.shape[1:3]}')
    if jnp.shape(t) != (x.shape[0],):
      raise ConfigError(f'UNet expects one timestep per example, t of shape [{x.shape[0]}], '
                        f'got {jnp.shape(t)}')
    if self.context_dim is not None:
      if context is None:
        raise ConfigError(f'this UNet cross-attends to a context of width {self.context_dim}; '
                          'pass context [N, L, context_dim] (or build it with context_dim=None)')
      if context.ndim != 3 or context.shape[0] != x.shape[0] or \
          context.shape[-1] != self.context_dim:
        raise ConfigError(f'context must be [{x.shape[0]}, L, {self.context_dim}], '
                          f'got {context.shape}')
    bad_levels = [a for a in self.attention_levels if not 0 <= a < len(self.channel_mult)]
    if bad_levels:
      raise ConfigError(f'attention_levels {bad_levels} are not levels of channel_mult '
                        f'{self.channel_mult}')


def sd_unet(base_width: int = 320, **overrides) -> UNet:
  """The paper's family: SD 1.5's UNet at base width c (64x64x4 latents, 768-dim context)."""
  kwargs = dict(base_width=base_width, channel_mult=(1, 2, 4, 4), num_res_blocks=2,
                attention_levels=(0, 1, 2), num_heads=8, context_dim=768, in_channels=4,
                out_channels=4, num_groups=32)
  kwargs.update(overrides)
  return UNet(**_tuples(kwargs))


def small_unet(base_width: int = 128, **overrides) -> UNet:
  """The same family for 32x32 pixel data (CIFAR-10): the DDPM-CIFAR layout in SD-1.5 blocks.

  Levels [c, 2c, 2c, 2c] at 32/16/8/4 pixels, two res blocks per level, transformer blocks at
  16x16 only and in the mid block, as in Ho et al.'s CIFAR-10 UNet (35.7M parameters at c=128),
  but with SD's transformer blocks (8 heads, GEGLU feed-forward) instead of DDPM's single-head
  attention, so it has more parameters (see docs/ldm_models.md). RGB in and out, no context by
  default (pass context_dim for class- or text-conditioning through cross-attention), and DDPM's
  CIFAR dropout of 0.1.
  """
  kwargs = dict(base_width=base_width, channel_mult=(1, 2, 2, 2), num_res_blocks=2,
                attention_levels=(1,), num_heads=8, context_dim=None, in_channels=3,
                out_channels=3, num_groups=32, dropout=0.1)
  kwargs.update(overrides)
  return UNet(**_tuples(kwargs))


def _tuples(kwargs: dict) -> dict:
  """Lists from config files become tuples, so the module stays hashable."""
  return {k: tuple(v) if isinstance(v, list) else v for k, v in kwargs.items()}
