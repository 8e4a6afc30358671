"""The networks of SBM at PolyMNIST scale: a unimodal autoencoder with a vector latent, and a
time-conditioned score MLP over the modalities' concatenated latents.

Departures from the paper (docs/sbm.md): the autoencoder is a small strided-conv net on the
28x28 images (the paper's ResVAE on 32x32 with BatchNorm and residual blocks is too slow on a
2-core CPU), and the score network is a residual MLP over the flat [M * d] latent (the paper
reshapes each d-vector to sqrt(d) x sqrt(d) and stacks modalities as channels of a U-Net); the
MLP's output is divided by sigma_t (score-sde's `scale_by_sigma`), so the network predicts
-noise and the loss (s * sigma + eps)^2 stays O(1) at every t.
"""

from __future__ import annotations

import math

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxcv.models import register_model
from jaxcv.models.layers import Classifier


class UnimodalAutoencoder(nn.Module):
  """Encoder x [B, 28, 28, C] -> (mu, logvar) [B, d]; decoder z -> raw x_hat (no sigmoid)."""
  latent_dim: int = 16
  width: int = 32
  image_shape: tuple = (28, 28, 3)

  def setup(self):
    w = self.width
    self.enc = [nn.Conv(w, (4, 4), (2, 2), padding=1, name='enc1'),
                nn.Conv(2 * w, (4, 4), (2, 2), padding=1, name='enc2')]
    self.enc_dense = nn.Dense(4 * w, name='enc_dense')
    self.mu = nn.Dense(self.latent_dim, name='mu')
    self.logvar = nn.Dense(self.latent_dim, name='logvar')
    h, wd, _ = self.image_shape
    self._grid = (h // 4, wd // 4)
    self.dec_dense1 = nn.Dense(4 * w, name='dec_dense1')
    self.dec_dense2 = nn.Dense(self._grid[0] * self._grid[1] * 2 * w, name='dec_dense2')
    self.dec = [nn.ConvTranspose(w, (4, 4), (2, 2), padding='SAME', name='dec1'),
                nn.ConvTranspose(self.image_shape[-1], (4, 4), (2, 2), padding='SAME',
                                 name='dec2')]

  def encode(self, x):
    h = x * 2.0 - 1.0
    for layer in self.enc:
      h = nn.leaky_relu(layer(h), 0.2)
    h = nn.leaky_relu(self.enc_dense(h.reshape(h.shape[0], -1)), 0.2)
    return self.mu(h), self.logvar(h)

  def decode(self, z):
    h = nn.leaky_relu(self.dec_dense1(z), 0.2)
    h = nn.leaky_relu(self.dec_dense2(h), 0.2)
    h = h.reshape(z.shape[0], *self._grid, 2 * self.width)
    h = nn.leaky_relu(self.dec[0](h), 0.2)
    return self.dec[1](h) * 0.5 + 0.5  # Raw values around [0, 1]; clipped only for display.

  def __call__(self, x, z_noise=None, train: bool = False):
    """(x_hat, mu, logvar); z = mu + z_noise when a noise array is given, else mu."""
    del train  # No train-mode layers; the loop's initialisation passes it.
    mu, logvar = self.encode(x)
    z = mu if z_noise is None else mu + z_noise
    return self.decode(z), mu, logvar


def sinusoidal_embedding(t: jax.Array, dim: int, scale: float = 1000.0) -> jax.Array:
  """Transformer-style embedding of continuous t in [0, 1] (scaled as the DDPM U-Nets do)."""
  half = dim // 2
  freqs = jnp.exp(-math.log(10000.0) * jnp.arange(half) / max(half - 1, 1))
  args = scale * t[:, None] * freqs[None]
  return jnp.concatenate([jnp.sin(args), jnp.cos(args)], -1)


def declare_latent_stats(module: nn.Module, dim: int) -> None:
  """The latents' standardisation (`latent_stats` collection: per-dimension mean and std of the
  training latents, set from data by the task), kept in the run so a loaded one has it."""
  module.variable('latent_stats', 'mean', jnp.zeros, (dim,))
  module.variable('latent_stats', 'std', jnp.ones, (dim,))


class ScoreMLP(nn.Module):
  """Residual MLP eps_hat(x_t, t) over flat latents [B, D] -> [B, out_dim or D]; holds the
  latents' standardisation unless `with_stats` is False (as the energy's inner MLP)."""
  dim: int
  hidden: int = 256
  depth: int = 3
  time_dim: int = 64
  out_dim: int = 0
  with_stats: bool = True

  @nn.compact
  def __call__(self, x, t):
    if self.with_stats:
      declare_latent_stats(self, self.dim)
    temb = sinusoidal_embedding(t, self.time_dim)
    temb = nn.Dense(self.hidden, name='time2')(nn.silu(nn.Dense(self.hidden, name='time1')(temb)))
    h = nn.Dense(self.hidden, name='stem')(x)
    for i in range(self.depth):
      r = nn.LayerNorm(name=f'norm{i}')(h)
      r = nn.silu(nn.Dense(2 * self.hidden, name=f'fc{i}a')(r) +
                  nn.Dense(2 * self.hidden, name=f'temb{i}')(temb))
      h = h + nn.Dense(self.hidden, name=f'fc{i}b')(r)
    return nn.Dense(self.out_dim or self.dim, name='out', kernel_init=nn.initializers.zeros)(
        nn.silu(nn.LayerNorm(name='norm_out')(h)))


@register_model('polymnist_cnn')
class PolyMNISTClassifier(Classifier):
  """The digit classifier of SBM's metrics: three stride-2 3x3 convs (width, 2 width, 4 width)
  with ReLU and a hidden Dense layer (the features), as the official shared classifier (3
  strided convs 32/64/128 + MLP); no BatchNorm."""
  width: int = 32
  hidden: int = 128

  @property
  def feature_dim(self) -> int:
    return self.hidden

  @nn.compact
  def __call__(self, x, *, train: bool = False, return_features: bool = False):
    del train
    h = self.normalize(x)
    for i, mult in enumerate((1, 2, 4)):
      h = nn.relu(nn.Conv(self.width * mult, (3, 3), (2, 2), padding=1, dtype=self.dtype,
                          name=f'conv{i + 1}')(h))
    h = nn.relu(nn.Dense(self.hidden, dtype=self.dtype, name='fc')(h.reshape(h.shape[0], -1)))
    return self.finish(h, return_features)
