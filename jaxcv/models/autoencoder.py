"""The KL-regularised autoencoder of latent diffusion (Rombach et al. 2022, Stable Diffusion's VAE).

Encoder: conv, `num_res_blocks` res blocks per level with a stride-2 downsample between levels,
a mid block (res, single-head self-attention, res), GroupNorm-SiLU-conv to 2 x latent_channels
(mean and log-variance of a diagonal Gaussian), then a 1x1 `quant_conv`. The decoder mirrors it
(`post_quant_conv`, mid block, `num_res_blocks + 1` res blocks per level, nearest upsampling).
The downsampling factor is f = 2 ** (len(channel_mult) - 1): channel_mult (1, 2, 4) gives f=4,
SD's (1, 2, 4, 4) with channels=128 gives f=8 (its 83.7M-parameter VAE).

Images are float [0, 1] NHWC outside (jaxcv's convention) and [-1, 1] inside, as in LDM.
Reconstructions come back in the [0, 1] range, unclipped.
"""

from __future__ import annotations

from typing import Any, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxcv.errors import ConfigError


def _conv(features: int, kernel: int, dtype: Any, name: str) -> nn.Conv:
  return nn.Conv(features, (kernel, kernel), padding='SAME', dtype=dtype,
                 param_dtype=jnp.float32, name=name)


def _norm(num_groups: int, dtype: Any, name: str) -> nn.GroupNorm:
  return nn.GroupNorm(num_groups, epsilon=1e-6, dtype=dtype, param_dtype=jnp.float32, name=name)


class AEResBlock(nn.Module):
  """GroupNorm-SiLU-conv twice with a (1x1-projected) skip; no timestep input."""
  features: int
  num_groups: int = 32
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    h = _conv(self.features, 3, self.dtype, 'conv_0')(
        nn.silu(_norm(self.num_groups, self.dtype, 'norm_0')(x)))
    h = _conv(self.features, 3, self.dtype, 'conv_1')(
        nn.silu(_norm(self.num_groups, self.dtype, 'norm_1')(h)))
    if x.shape[-1] != self.features:
      x = _conv(self.features, 1, self.dtype, 'skip')(x)
    return x + h


class AEAttention(nn.Module):
  """Single-head self-attention over all positions (LDM's AttnBlock), with a residual."""
  num_groups: int = 32
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    n, height, width, dim = x.shape
    h = _norm(self.num_groups, self.dtype, 'norm')(x).reshape(n, height * width, 1, dim)
    dense = lambda name: nn.Dense(dim, dtype=self.dtype, param_dtype=jnp.float32, name=name)
    out = jax.nn.dot_product_attention(dense('query')(h), dense('key')(h), dense('value')(h))
    return x + dense('out')(out.reshape(n, height, width, dim))


class KLAutoencoder(nn.Module):
  """Diagonal-Gaussian autoencoder: encode -> (mean, logvar), decode(z) -> image in [0, 1].

  Attributes:
    channels: width of the first level.
    channel_mult: width multiplier per level; f = 2 ** (len(channel_mult) - 1).
    num_res_blocks: res blocks per encoder level (decoder levels have one more).
    latent_channels: channels of the latent z.
    image_channels: channels of the image.
    num_groups: GroupNorm groups.
    dtype: compute dtype; parameters are float32, outputs float32.
  """
  channels: int = 128
  channel_mult: tuple = (1, 2, 4, 4)
  num_res_blocks: int = 2
  latent_channels: int = 4
  image_channels: int = 3
  num_groups: int = 32
  dtype: Any = jnp.float32

  @property
  def downsample_factor(self) -> int:
    return 2 ** (len(self.channel_mult) - 1)

  def setup(self):
    widths = [self.channels * m for m in self.channel_mult]
    for width in widths:
      if width % self.num_groups:
        raise ConfigError(f'KLAutoencoder widths {widths} must be divisible by num_groups='
                          f'{self.num_groups}')
    res = lambda f, name: AEResBlock(f, self.num_groups, self.dtype, name=name)
    attn = lambda name: AEAttention(self.num_groups, self.dtype, name=name)
    last = len(widths) - 1

    # Encoder.
    self.enc_conv_in = _conv(widths[0], 3, self.dtype, 'enc_conv_in')
    self.enc_levels = [
        [res(w, f'enc_{level}_res_{i}') for i in range(self.num_res_blocks)]
        for level, w in enumerate(widths)]
    self.enc_downsamples = [
        nn.Conv(w, (3, 3), strides=(2, 2), padding=((0, 1), (0, 1)), dtype=self.dtype,
                param_dtype=jnp.float32, name=f'enc_{level}_downsample')
        for level, w in enumerate(widths[:-1])]  # LDM pads right/bottom only before the stride.
    self.enc_mid = [res(widths[-1], 'enc_mid_res_0'), attn('enc_mid_attn'),
                    res(widths[-1], 'enc_mid_res_1')]
    self.enc_norm_out = _norm(self.num_groups, self.dtype, 'enc_norm_out')
    self.enc_conv_out = _conv(2 * self.latent_channels, 3, self.dtype, 'enc_conv_out')
    self.quant_conv = _conv(2 * self.latent_channels, 1, self.dtype, 'quant_conv')

    # Decoder.
    self.post_quant_conv = _conv(self.latent_channels, 1, self.dtype, 'post_quant_conv')
    self.dec_conv_in = _conv(widths[-1], 3, self.dtype, 'dec_conv_in')
    self.dec_mid = [res(widths[-1], 'dec_mid_res_0'), attn('dec_mid_attn'),
                    res(widths[-1], 'dec_mid_res_1')]
    self.dec_levels = {
        level: [res(widths[level], f'dec_{level}_res_{i}') for i in range(self.num_res_blocks + 1)]
        for level in range(last, -1, -1)}
    self.dec_upsamples = {level: _conv(widths[level], 3, self.dtype, f'dec_{level}_upsample')
                          for level in range(last, 0, -1)}
    self.dec_norm_out = _norm(self.num_groups, self.dtype, 'dec_norm_out')
    self.dec_conv_out = _conv(self.image_channels, 3, self.dtype, 'dec_conv_out')

  def encode(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(mean, logvar) of q(z | x), float32 [N, H/f, W/f, latent_channels]; x float [0, 1]."""
    f = self.downsample_factor
    if x.ndim != 4 or x.shape[-1] != self.image_channels or x.shape[1] % f or x.shape[2] % f:
      raise ConfigError(f'KLAutoencoder expects images [N, H, W, {self.image_channels}] with H '
                        f'and W divisible by {f}, got {x.shape}')
    h = self.enc_conv_in((jnp.asarray(x, jnp.float32) * 2.0 - 1.0).astype(self.dtype))
    for level, blocks in enumerate(self.enc_levels):
      for block in blocks:
        h = block(h)
      if level < len(self.enc_downsamples):
        h = self.enc_downsamples[level](h)
    for block in self.enc_mid:
      h = block(h)
    h = self.enc_conv_out(nn.silu(self.enc_norm_out(h)))
    moments = self.quant_conv(h).astype(jnp.float32)
    mean, logvar = jnp.split(moments, 2, axis=-1)
    return mean, jnp.clip(logvar, -30.0, 20.0)  # LDM's clamp keeps exp(logvar) finite.

  def decode(self, z: jax.Array) -> jax.Array:
    """Image float32 [N, H, W, image_channels] in the [0, 1] range (unclipped) from latents z."""
    h = self.dec_conv_in(self.post_quant_conv(jnp.asarray(z, self.dtype)))
    for block in self.dec_mid:
      h = block(h)
    for level, blocks in self.dec_levels.items():
      for block in blocks:
        h = block(h)
      if level in self.dec_upsamples:
        h = jnp.repeat(jnp.repeat(h, 2, axis=1), 2, axis=2)
        h = self.dec_upsamples[level](h)
    h = self.dec_conv_out(nn.silu(self.dec_norm_out(h)))
    return (h.astype(jnp.float32) + 1.0) / 2.0

  def __call__(self, x: jax.Array, rng: Optional[jax.Array] = None, *, train: bool = False):
    """(x_hat, mean, logvar); decodes a posterior sample when rng is given, else the mean."""
    del train  # No dropout or batch statistics.
    mean, logvar = self.encode(x)
    z = mean
    if rng is not None:
      z = mean + jnp.exp(0.5 * logvar) * jax.random.normal(rng, mean.shape, mean.dtype)
    return self.decode(z), mean, logvar


def kl_divergence(mean: jax.Array, logvar: jax.Array) -> jax.Array:
  """KL(N(mean, exp(logvar)) || N(0, 1)) per example, summed over latent elements."""
  kl = 0.5 * (jnp.square(mean) + jnp.exp(logvar) - 1.0 - logvar)
  return jnp.sum(kl.reshape(kl.shape[0], -1), axis=-1)
