"""Training the KL autoencoder of latent diffusion: reconstruction loss + a small KL term.

loss = (sum of per-pixel reconstruction errors + kl_weight * KL(q(z|x) || N(0, I))) / pixels,
averaged over the batch. Sums in the numerator weight the KL exactly as LDM's
`LPIPSWithDiscriminator` does with its `kl_weight` (1e-6 for SD's VAE); dividing by the number of
pixel values only rescales the loss to per-pixel size. Not implemented: LPIPS and the patch-GAN
discriminator of LDM's first stage (so reconstructions are blurrier than SD's VAE).

Config section `config.autoencoder` (defaults in `default_config`): loss 'l1' | 'l2', kl_weight,
sample_posterior (decode a sample of q(z|x) in training, as LDM; else its mean).
The model is `config.model.name = 'kl_autoencoder'` with `config.model.kwargs` passed to
`jaxcv.models.autoencoder.KLAutoencoder`.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import ml_collections

from jaxcv.errors import ConfigError
from jaxcv.models.autoencoder import KLAutoencoder, kl_divergence
from jaxcv.tasks import register
from jaxcv.tasks.base import Task

MODEL_NAME = 'kl_autoencoder'
_LOSSES = ('l1', 'l2')


def default_config() -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict({'loss': 'l1', 'kl_weight': 1e-6, 'sample_posterior': True})


def psnr(images: jax.Array, reconstructions: jax.Array) -> jax.Array:
  """Mean PSNR in dB of reconstructions clipped to [0, 1] against [0, 1] images."""
  mse = jnp.mean(jnp.square(jnp.clip(reconstructions, 0.0, 1.0) - images), axis=(1, 2, 3))
  return jnp.mean(-10.0 * jnp.log10(jnp.maximum(mse, 1e-10)))


@register('autoencoder')
class AutoencoderTask(Task):

  def __init__(self, config, info):
    options = default_config()
    if 'autoencoder' in config:
      options.update(config.autoencoder.to_dict())
    if options.loss not in _LOSSES:
      raise ConfigError(f'autoencoder.loss must be one of {_LOSSES}, got {options.loss!r}')
    if options.kl_weight < 0:
      raise ConfigError(f'autoencoder.kl_weight must be >= 0, got {options.kl_weight}')
    self.options = options
    super().__init__(config, info)

  def build_model(self) -> KLAutoencoder:
    if self.config.model.name != MODEL_NAME:
      raise ConfigError(f"the autoencoder task trains model.name='{MODEL_NAME}', "
                        f'got {self.config.model.name!r}')
    kwargs = self.config.model.kwargs.to_dict()
    settable = {f.name for f in dataclasses.fields(KLAutoencoder)} - {'parent', 'name', 'dtype',
                                                                      'image_channels'}
    unknown = sorted(set(kwargs) - settable)
    if unknown:
      raise ConfigError(f'{MODEL_NAME} has no attribute {unknown[0]!r}; it accepts: '
                        f'{", ".join(sorted(settable))}')
    kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in kwargs.items()}
    dtype = jnp.bfloat16 if self.config.dtype == 'bfloat16' else jnp.float32
    model = KLAutoencoder(image_channels=self.info.image_shape[-1], dtype=dtype, **kwargs)
    height, width = self.info.image_shape[:2]
    f = model.downsample_factor
    if height % f or width % f:
      raise ConfigError(f'images of {height}x{width} are not divisible by the autoencoder '
                        f'downsampling factor {f} (len(channel_mult) - 1 halvings)')
    return model

  def loss(self, params, model_state, extra, batch, rng):
    del extra
    images = batch['image']
    posterior_rng = rng if self.options.sample_posterior else None
    x_hat, mean, logvar = self.model.apply({'params': params, **model_state}, images,
                                           posterior_rng, train=True)
    error = x_hat - images
    per_pixel = jnp.abs(error) if self.options.loss == 'l1' else jnp.square(error)
    pixels = math.prod(images.shape[1:])
    reconstruction = jnp.sum(per_pixel.reshape(per_pixel.shape[0], -1), axis=-1)
    kl = kl_divergence(mean, logvar)
    loss = jnp.mean(reconstruction + self.options.kl_weight * kl) / pixels
    metrics = {'loss': loss, 'l1': jnp.mean(jnp.abs(error)), 'mse': jnp.mean(jnp.square(error)),
               'kl': jnp.mean(kl), 'psnr': psnr(images, x_hat),
               'latent_std': jnp.std(mean)}
    return loss, (metrics, model_state)

  def predict_fns(self):
    def reconstruct(variables, images):
      return self.model.apply(variables, images)[0]

    def encode(variables, images):
      return self.model.apply(variables, images, method='encode')[0]

    def decode(variables, latents):
      return self.model.apply(variables, latents, method='decode')
    return {'reconstruct': reconstruct, 'encode': encode, 'decode': decode}
