"""Vision Transformer (Dosovitskiy et al.) sized for small images.

Layout follows timm's `VisionTransformer` (pre-norm blocks, class token,
learned position embeddings, exact GELU, LayerNorm eps 1e-6), so parameter
counts match timm: `vit_tiny` with patch 16 at 224x224 and 1000 classes has
5,717,416.
"""

from __future__ import annotations

import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxcv.errors import ConfigError
from jaxcv.models.layers import Classifier

_dense_init = nn.initializers.truncated_normal(0.02)


class EncoderBlock(nn.Module):
  """x + MHSA(LN(x)), then x + MLP(LN(x))."""
  num_heads: int
  mlp_dim: int
  dropout: float
  dtype: Any

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    dim = x.shape[-1]
    dense = functools.partial(nn.Dense, dtype=self.dtype, param_dtype=jnp.float32,
                              kernel_init=_dense_init)
    drop = functools.partial(nn.Dropout, self.dropout, deterministic=not train)
    y = nn.LayerNorm(dtype=self.dtype, name='norm1')(x)
    # fp32 softmax: bf16 attention logits lose too much precision.
    y = nn.MultiHeadDotProductAttention(
        self.num_heads, dtype=self.dtype, param_dtype=jnp.float32,
        kernel_init=_dense_init, force_fp32_for_softmax=True, name='attn')(y)
    x = x + drop()(y)
    y = nn.LayerNorm(dtype=self.dtype, name='norm2')(x)
    y = nn.gelu(dense(self.mlp_dim, name='mlp_fc1')(y), approximate=False)
    y = dense(dim, name='mlp_fc2')(drop()(y))
    return x + drop()(y)


class ViT(Classifier):
  """ViT with a class token; the head reads the final-LayerNorm class token.

  The position embeddings are sized by the image given to `init`: apply the
  model to images of that size.

  Attributes:
    patch_size: side of the square patches (4 suits 32x32 images).
    dim: token width.
    depth: number of encoder blocks.
    num_heads: attention heads per block.
    mlp_dim: hidden width of the block MLPs.
    dropout: rate after the embeddings, attention projection and MLP layers
      (needs a 'dropout' rng when training with a rate > 0).

  Sows block outputs [N, tokens, dim] as `intermediates/block1`..`block{depth}`.
  """
  patch_size: int = 4
  dim: int = 192
  depth: int = 12
  num_heads: int = 3
  mlp_dim: int = 768
  dropout: float = 0.0

  @property
  def feature_dim(self) -> int:
    return self.dim

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool = False,
               return_features: bool = False):
    height, width = x.shape[1:3]
    if height % self.patch_size or width % self.patch_size:
      raise ConfigError(f'ViT patch_size {self.patch_size} does not divide the '
                        f'{height}x{width} input')
    if self.dim % self.num_heads:
      raise ConfigError(f'ViT dim {self.dim} is not divisible by num_heads {self.num_heads}')
    p = self.patch_size
    h = nn.Conv(self.dim, (p, p), strides=(p, p), padding='VALID',
                dtype=self.dtype, param_dtype=jnp.float32,
                name='patch_embed')(self.normalize(x))
    h = h.reshape(h.shape[0], -1, self.dim)
    cls = self.param('cls_token', nn.initializers.zeros, (1, 1, self.dim), jnp.float32)
    h = jnp.concatenate([jnp.broadcast_to(cls, (h.shape[0], 1, self.dim)).astype(h.dtype), h],
                        axis=1)
    pos = self.param('pos_embed', nn.initializers.normal(0.02),
                     (1, h.shape[1], self.dim), jnp.float32)
    h = nn.Dropout(self.dropout, deterministic=not train)(h + pos.astype(h.dtype))
    for i in range(self.depth):
      h = EncoderBlock(self.num_heads, self.mlp_dim, self.dropout, self.dtype,
                       name=f'encoder{i + 1}')(h, train)
      self.sow('intermediates', f'block{i + 1}', h)
    h = nn.LayerNorm(dtype=self.dtype, name='norm')(h)
    return self.finish(h[:, 0], return_features)


ViTTiny = functools.partial(ViT, dim=192, depth=12, num_heads=3, mlp_dim=768)
ViTSmall = functools.partial(ViT, dim=384, depth=12, num_heads=6, mlp_dim=1536)
