"""Denoising diffusion training (DDPM, Ho et al. 2020) as a task of the single loop.

`config.task = 'diffusion'` with a `config.diffusion` section (add it with
`add_diffusion_config`). The loop's EMA (`config.ema_decay`), bf16 compute (`config.dtype`),
sharding rules and checkpoints apply unchanged. What this task adds:

- noise schedule and parameterisation (jaxcv/diffusion/schedules.py): ε or v targets, MSE loss
  in float32 at a uniformly drawn timestep;
- conditioning (jaxcv/diffusion/conditioning.py): class labels through a learned embedding
  sequence with a null class and label dropout for classifier-free guidance; text through
  precomputed embeddings (a per-class table [num_classes, L, D] in a .npy file, or a batch's
  'text_embedding' entry when a loader provides one); or none;
- latent mode: images are encoded on the fly by a frozen KL autoencoder from another run's
  checkpoint (its parameters ride in TrainState.extra, never updated);
- image conditioning for super-resolution: the low-resolution image, upsampled back (and
  encoded in latent mode), is concatenated with the noisy input.

Sampling (jaxcv/diffusion/samplers.py) goes through `task.sampler(...)` / `task.generate(...)`.
"""

from __future__ import annotations

import functools
import os
from typing import Callable, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jaxcv.diffusion import conditioning as cond_lib
from jaxcv.diffusion import samplers as samplers_lib
from jaxcv.diffusion import schedules as schedules_lib
from jaxcv.errors import ConfigError
from jaxcv.tasks import register
from jaxcv.tasks.base import Task

CONDITIONINGS = ('class', 'text', 'none')
IMAGE_CONDITIONS = ('', 'low_res')


def _unet_factory(name: str) -> Callable[..., nn.Module]:
  from jaxcv.models import unet  # pylint: disable=import-outside-toplevel
  return {'unet': unet.UNet, 'small_unet': unet.small_unet, 'sd_unet': unet.sd_unet}[name]


# config.model.name -> constructor(**kwargs) of a denoiser with the UNet's call signature
# `(x, t, context=None, *, train=False)`. Projects may register their own.
DENOISERS: dict[str, Callable[..., nn.Module]] = {
    name: functools.partial(lambda n, **kw: _unet_factory(n)(**kw), name)
    for name in ('unet', 'small_unet', 'sd_unet')
}


def add_diffusion_config(config: ml_collections.ConfigDict, *, schedule: str = 'cosine',
                         prediction: str = 'v', conditioning: str = 'class',
                         num_timesteps: int = 1000, label_dropout: float = 0.1,
                         context_dim: int = 128, context_len: int = 1,
                         autoencoder_checkpoint: str = '', latent_scale: float = 1.0,
                         image_condition: str = '', low_res_factor: int = 4,
                         text_embeddings: str = '') -> ml_collections.ConfigDict:
  """Makes `config` a diffusion run: sets task='diffusion' and adds the `diffusion` section."""
  config.task = 'diffusion'
  config.diffusion = ml_collections.ConfigDict(dict(
      schedule=schedule,  # linear | scaled_linear | cosine
      num_timesteps=num_timesteps,
      prediction=prediction,  # eps | v
      conditioning=conditioning,  # class | text | none
      label_dropout=label_dropout,  # Fraction of null conditions, for classifier-free guidance.
      context_dim=context_dim,  # Width of the class-embedding sequence (cross-attention context).
      context_len=context_len,  # Its length L.
      text_embeddings=text_embeddings,  # .npy [num_classes, L, D] of class-prompt embeddings.
      # Latent mode when set: a jaxcv run (workdir) of a KL autoencoder, frozen.
      autoencoder_checkpoint=autoencoder_checkpoint,
      latent_scale=latent_scale,  # Latents are multiplied by this (SD: 0.18215) for unit scale.
      image_condition=image_condition,  # '' | low_res (super-resolution)
      low_res_factor=low_res_factor,
  ))
  return config


def _load_autoencoder(checkpoint: str):
  """(KLAutoencoder module, its params as host arrays) from a jaxcv autoencoder run: its EMA
  params when it kept any (whatever its eval_with_ema), the model kwargs from its config.json;
  or from a converted checkpoint (jaxcv.pretrained: KIND:PATH or a converted folder)."""
  from jaxcv import checkpoint as checkpoint_lib  # pylint: disable=import-outside-toplevel
  from jaxcv import pretrained  # pylint: disable=import-outside-toplevel
  from jaxcv.models import autoencoder  # pylint: disable=import-outside-toplevel
  if pretrained.parse_source(checkpoint) is not None:  # KIND:PATH, e.g. SD's VAE file.
    converted = pretrained.convert_source(checkpoint)
    return autoencoder.KLAutoencoder(**converted.model_kwargs), converted.params
  weights = checkpoint_lib.load_run_weights(checkpoint, default_use_ema=True)
  # A run's model kwargs, or those a converted checkpoint folder records (pretrained.json).
  kwargs = ((weights.config or pretrained.converted_record(checkpoint) or {}).get('model') or {}
            ).get('kwargs') or {}
  kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in kwargs.items()}
  kwargs.pop('dtype', None)  # The frozen encoder runs in float32.
  return autoencoder.KLAutoencoder(**kwargs), weights.params


@register('diffusion')
class DiffusionTask(Task):
  """ε/v-prediction training of a (conditional) denoiser; see the module docstring."""

  def __init__(self, config: ml_collections.ConfigDict, info):
    if 'diffusion' not in config:
      raise ConfigError("task='diffusion' needs a config.diffusion section; add it with "
                        'jaxcv.tasks.diffusion.add_diffusion_config(config)')
    d = self.settings = config.diffusion
    if d.conditioning not in CONDITIONINGS:
      raise ConfigError(f'diffusion.conditioning must be one of {CONDITIONINGS}, got '
                        f'{d.conditioning!r}')
    if d.image_condition not in IMAGE_CONDITIONS:
      raise ConfigError(f'diffusion.image_condition must be one of {IMAGE_CONDITIONS}, got '
                        f'{d.image_condition!r}')
    if d.prediction not in schedules_lib.PREDICTIONS:
      raise ConfigError(f'diffusion.prediction must be one of {schedules_lib.PREDICTIONS}, '
                        f'got {d.prediction!r}')
    if not 0.0 <= d.label_dropout < 1.0:
      raise ConfigError(f'diffusion.label_dropout must be in [0, 1), got {d.label_dropout}')
    self.schedule = schedules_lib.build_schedule(d.schedule, d.num_timesteps)
    self.prediction = d.prediction
    self.num_classes = info.num_classes
    self.text_table = None
    if d.conditioning == 'text':
      if not d.text_embeddings or not os.path.isfile(d.text_embeddings):
        raise ConfigError("diffusion.conditioning='text' needs diffusion.text_embeddings: a .npy "
                          f'file [num_classes, L, D]; got {d.text_embeddings!r}')
      self.text_table = np.load(d.text_embeddings).astype(np.float32)
      if self.text_table.ndim != 3 or len(self.text_table) != info.num_classes:
        raise ConfigError(f'{d.text_embeddings} holds {self.text_table.shape}; expected '
                          f'[{info.num_classes}, L, D]')
    self.autoencoder, self.autoencoder_params = None, None
    self.sample_shape = tuple(info.image_shape)
    if d.autoencoder_checkpoint:
      self.autoencoder, self.autoencoder_params = _load_autoencoder(d.autoencoder_checkpoint)
      self.autoencoder_params = jax.tree.map(np.asarray, self.autoencoder_params)
      latent = jax.eval_shape(lambda x: self._encode(self.autoencoder_params, x),
                              jax.ShapeDtypeStruct((1, *info.image_shape), jnp.float32))
      self.sample_shape = tuple(latent.shape[1:])
    super().__init__(config, info)
    self._samplers: dict[tuple, samplers_lib.Sampler] = {}

  # --- model -------------------------------------------------------------------------------
  def build_model(self) -> nn.Module:
    d = self.settings
    name = self.config.model.name
    if name not in DENOISERS:
      raise ConfigError(f'model {name!r} is not a denoiser; known: {sorted(DENOISERS)}')
    channels = self.sample_shape[-1]
    if d.conditioning == 'class':
      context_dim = d.context_dim
    elif d.conditioning == 'text':
      context_dim = self.text_table.shape[-1]
    else:
      context_dim = None
    unet = DENOISERS[name](**{
        **self.config.model.kwargs.to_dict(),
        'in_channels': channels * (2 if d.image_condition else 1), 'out_channels': channels,
        'context_dim': context_dim,
        'dtype': jnp.bfloat16 if self.config.dtype == 'bfloat16' else jnp.float32})
    return cond_lib.ConditionalDenoiser(
        unet, num_classes=self.num_classes if d.conditioning == 'class' else 0,
        context_dim=d.context_dim, context_len=d.context_len)

  def init_variables(self, rng):
    x = jnp.zeros((1, *self.sample_shape), jnp.float32)
    params_rng, dropout_rng = jax.random.split(rng)
    variables = dict(self.model.init({'params': params_rng, 'dropout': dropout_rng}, x,
                                     jnp.zeros((1,), jnp.int32),
                                     **self.null_condition(x), train=False))
    params = variables.pop('params')
    variables.pop('intermediates', None)
    return params, variables

  def init_extra(self, rng, params, model_state):
    del rng, params, model_state
    if self.autoencoder is None:
      return None
    return {'autoencoder': jax.tree.map(jnp.asarray, self.autoencoder_params)}

  def from_pretrained(self, params, model_state, pretrained):
    # A bare UNet's weights (a converted diffusers UNet: jaxcv.pretrained) are the denoiser's
    # `unet`; its conditioning (a class embedding) keeps its initialisation.
    theirs = pretrained['params']
    if 'unet' in params and 'unet' not in theirs and 'conv_in' in theirs:
      pretrained = {**pretrained, 'params': {**params, 'unet': theirs}}
    return super().from_pretrained(params, model_state, pretrained)

  def trainable_labels(self, params):
    return None  # The autoencoder lives in `extra`, outside the optimizer.

  # --- data <-> diffusion space --------------------------------------------------------------
  def _encode(self, ae_params, images, rng=None):
    """Float [0, 1] images -> scaled latents (a posterior sample when rng is given)."""
    mean, logvar = self.autoencoder.apply({'params': ae_params}, images, method='encode')
    if rng is not None:
      mean = mean + jnp.exp(0.5 * logvar) * jax.random.normal(rng, mean.shape, mean.dtype)
    return mean.astype(jnp.float32) * self.settings.latent_scale

  def to_diffusion_space(self, extra, images, rng=None):
    """Float [0, 1] images -> what the denoiser models: [-1, 1] pixels or scaled latents."""
    if self.autoencoder is None:
      return images * 2.0 - 1.0
    return self._encode(extra['autoencoder'], images, rng)

  def to_images(self, x, ae_params=None) -> jax.Array:
    """Samples -> float [0, 1] images (decoding latents with the frozen autoencoder)."""
    if self.autoencoder is not None:
      params = self.autoencoder_params if ae_params is None else ae_params
      x = self.autoencoder.apply({'params': params}, x / self.settings.latent_scale,
                                 method='decode')
      return jnp.clip(x.astype(jnp.float32), 0.0, 1.0)
    return jnp.clip((x + 1.0) / 2.0, 0.0, 1.0)

  # --- conditions ----------------------------------------------------------------------------
  def condition(self, labels=None, images=None, extra=None, text_embedding=None) -> dict:
    """Keyword inputs of the denoiser for a batch: labels / context and the image condition."""
    d = self.settings
    cond = {}
    if d.conditioning == 'class':
      cond['labels'] = jnp.asarray(labels, jnp.int32)
    elif d.conditioning == 'text':
      cond['context'] = (text_embedding if text_embedding is not None
                         else jnp.asarray(self.text_table)[labels])
    if d.image_condition:
      low = cond_lib.low_res_condition(images, d.low_res_factor)
      ae = None if extra is None else extra.get('autoencoder')
      if self.autoencoder is None:
        cond['image_cond'] = low * 2.0 - 1.0
      else:
        cond['image_cond'] = self._encode(self.autoencoder_params if ae is None else ae, low)
    return cond

  def null_condition(self, x_or_cond) -> dict:
    """The unconditional input: null labels / zero context; an image condition is kept."""
    d = self.settings
    if not isinstance(x_or_cond, dict):  # A dummy batch x: build a condition of its size.
      n = x_or_cond.shape[0]
      cond = {}
      if d.conditioning == 'class':
        cond['labels'] = jnp.full((n,), self.num_classes, jnp.int32)
      elif d.conditioning == 'text':
        cond['context'] = jnp.zeros((n, *self.text_table.shape[1:]), jnp.float32)
      if d.image_condition:
        cond['image_cond'] = jnp.zeros(x_or_cond.shape, jnp.float32)
      return cond
    cond = dict(x_or_cond)
    if 'labels' in cond:
      cond['labels'] = cond_lib.null_labels(cond['labels'], self.num_classes)
    if 'context' in cond:
      cond['context'] = jnp.zeros_like(cond['context'])
    return cond

  def _drop_conditions(self, rng, cond):
    p = self.settings.label_dropout
    if 'labels' in cond:
      cond['labels'] = cond_lib.drop_labels(rng, cond['labels'], p, self.num_classes)
    if 'context' in cond:
      cond['context'] = cond_lib.drop_context(rng, cond['context'], p)
    return cond

  # --- training ------------------------------------------------------------------------------
  def loss(self, params, model_state, extra, batch, rng):
    images = batch['image']
    encode_rng, t_rng, noise_rng, drop_rng, dropout_rng = jax.random.split(rng, 5)
    x0 = self.to_diffusion_space(extra, images, encode_rng)
    n = x0.shape[0]
    t = jax.random.randint(t_rng, (n,), 0, self.schedule.num_timesteps)
    noise = jax.random.normal(noise_rng, x0.shape, jnp.float32)
    x_t = schedules_lib.add_noise(self.schedule, x0, noise, t)
    target = schedules_lib.training_target(self.schedule, x0, noise, t, self.prediction)
    cond = self.condition(batch.get('label'), images, extra, batch.get('text_embedding'))
    cond = self._drop_conditions(drop_rng, cond)
    output, new_model_state = self.model.apply(
        {'params': params, **model_state}, x_t, t, **cond, train=True,
        rngs={'dropout': dropout_rng}, mutable=list(model_state.keys()))
    loss = jnp.mean(jnp.square(output.astype(jnp.float32) - target))
    return loss, ({'loss': loss}, dict(new_model_state))

  # --- sampling and evaluation ----------------------------------------------------------------
  def denoise(self, variables, x, t, cond):
    """The samplers' DenoiseFn: network output at (x_t, t) under `cond` (a dict or None)."""
    return self.model.apply(variables, x, t, **(cond or {}), train=False)

  def predict_fns(self):
    # 'sample' serves the 'generative' (FID/KID) evaluator.
    return {'denoise': self.denoise, 'sample': self.generate}

  def sampler(self, max_steps: int = 50, mesh=None, spacing: str = 'trailing'
             ) -> samplers_lib.Sampler:
    """A compiled sampler for this model (cached: one serves every method, step count <=
    max_steps and guidance scale)."""
    key = (max_steps, id(mesh), spacing)
    if key not in self._samplers:
      self._samplers[key] = samplers_lib.Sampler(
          self.denoise, self.schedule, prediction=self.prediction, max_steps=max_steps,
          spacing=spacing, mesh=mesh)
    return self._samplers[key]

  def generate(self, variables, rng, labels=None, *, method: str = 'ddim', num_steps: int = 50,
               guidance_scale: Optional[float] = None, eta: float = 0.0, images=None,
               mesh=None, max_steps: Optional[int] = None,
               num_samples: Optional[int] = None) -> jax.Array:
    """Float [0, 1] images: one per label (or per condition image for super-resolution).

    guidance_scale=None samples the conditional model without guidance; with a scale, the
    unconditional pass uses the null condition. `images` (float [0, 1]) are the high-resolution
    sources of the low-res condition in super-resolution mode. Unconditional models take
    `num_samples` instead of labels.
    """
    if labels is not None:
      n = len(labels)
    elif images is not None:
      n = len(images)
    elif num_samples:
      n = num_samples
    else:
      raise ConfigError('generate needs labels, condition images or num_samples')
    if labels is None and self.settings.conditioning == 'class':
      labels = jnp.full((n,), self.num_classes, jnp.int32)  # The null class: unconditional.
    cond = self.condition(labels, images)
    noise_rng, sample_rng = jax.random.split(rng)
    noise = jax.random.normal(noise_rng, (n, *self.sample_shape), jnp.float32)
    sampler = self.sampler(max(num_steps, max_steps or 0), mesh)
    guided = guidance_scale is not None and self.settings.conditioning != 'none'
    x = sampler(variables, noise, cond or None, method=method, num_steps=num_steps, eta=eta,
                rng=sample_rng,
                guidance_scale=guidance_scale if guided else None,
                null_cond=self.null_condition(cond) if guided else None)
    return self.to_images(x)
