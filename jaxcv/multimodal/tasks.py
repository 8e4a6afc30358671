"""SBM's two training stages as tasks of the single loop.

unimodal_ae (stage 1): one autoencoder per modality, trained on `polymnist(modality=k):mnist`.
  config.unimodal: variational (True: SBM-VAE, loss sum_pixels (x_hat - x)^2 + beta KL;
  False: SBM-RAE, z = mu, loss sum_pixels MSE + beta mean |z|^2 with the decoder fed
  z + decoder_noise * eps), beta, decoder_noise. Model kwargs: latent_dim, width.

sbm_score (stage 2): a score model over the concatenated latents of M frozen stage-1 encoders
  (loaded with jaxcv.inference.load_run from config.sbm.encoders, ';'-separated run folders, in
  modality order), trained by denoising score matching on the VP-SDE. The training tuples are
  encoded once (posterior means) when the loop prepares the task, and the latents are
  standardised per dimension with their training mean and std (kept in the model state, so a
  loaded run has them). config.sbm: encoders, beta0, beta1, eps_train, hidden, depth.
"""

from __future__ import annotations

import ml_collections
import flax
import jax
import jax.numpy as jnp
import numpy as np

from jaxcv.data.augment import to_float
from jaxcv.errors import ConfigError
from jaxcv.multimodal import polymnist
from jaxcv.multimodal.models import ScoreMLP, UnimodalAutoencoder
from jaxcv.multimodal.sde import VPSDE, dsm_loss
from jaxcv.tasks import register
from jaxcv.tasks.base import Task

ENCODE_BATCH = 1000


def unimodal_defaults() -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict({'variational': True, 'beta': 0.5, 'decoder_noise': 0.01})


def sbm_defaults() -> ml_collections.ConfigDict:
  # beta0=1, beta1=5: the official PolyMNIST script's VP-SDE.
  return ml_collections.ConfigDict({'encoders': '', 'beta0': 1.0, 'beta1': 5.0,
                                    'eps_train': 1e-5, 'hidden': 256, 'depth': 3})


def _options(config, section, defaults):
  options = defaults
  if section in config:
    unknown = sorted(set(config[section]) - set(options))
    if unknown:
      raise ConfigError(f'config.{section} has no key {unknown[0]!r}; known: {sorted(options)}')
    options.update(config[section].to_dict())
  return options


@register('unimodal_ae')
class UnimodalAETask(Task):

  def __init__(self, config, info):
    self.options = _options(config, 'unimodal', unimodal_defaults())
    if self.options.beta < 0:
      raise ConfigError(f'unimodal.beta must be >= 0, got {self.options.beta}')
    super().__init__(config, info)

  def build_model(self):
    kwargs = self.config.model.kwargs.to_dict()
    return UnimodalAutoencoder(latent_dim=kwargs.get('latent_dim', 16),
                               width=kwargs.get('width', 32),
                               image_shape=tuple(self.info.image_shape))

  def augment(self, rng, batch):
    return {**batch, 'image': to_float(batch['image'])}

  def loss(self, params, model_state, extra, batch, rng):
    del extra
    x = batch['image']
    variables = {'params': params, **model_state}
    mu, logvar = self.model.apply(variables, x, method='encode')
    if self.options.variational:
      z = mu + jnp.exp(0.5 * logvar) * jax.random.normal(rng, mu.shape)
      reg = 0.5 * jnp.sum(jnp.exp(logvar) + mu ** 2 - 1.0 - logvar, -1)  # KL to N(0, I).
    else:
      z = mu + self.options.decoder_noise * jax.random.normal(rng, mu.shape)
      reg = jnp.sum(mu ** 2, -1)
    x_hat = self.model.apply(variables, z, method='decode')
    sse = jnp.sum(jnp.square(x_hat - x).reshape(x.shape[0], -1), -1)
    loss = jnp.mean(sse + self.options.beta * reg)
    metrics = {'sse': jnp.mean(sse), 'regulariser': jnp.mean(reg),
               'mse': jnp.mean(jnp.square(x_hat - x)), 'latent_std': jnp.std(mu)}
    return loss, (metrics, model_state)

  def predict_fns(self):
    def encode(variables, images):
      return self.model.apply(variables, images, method='encode')[0]

    def decode(variables, latents):
      return self.model.apply(variables, latents, method='decode')

    def reconstruct(variables, images):
      return self.model.apply(variables, images)[0]
    return {'encode': encode, 'decode': decode, 'reconstruct': reconstruct}


def load_encoders(paths: str):
  """The frozen stage-1 runs named by 'run0;run1;...' (jaxcv.inference.load_run)."""
  from jaxcv import inference  # pylint: disable=import-outside-toplevel
  runs = [p.strip() for p in paths.split(';') if p.strip()]
  if not runs:
    raise ConfigError("sbm.encoders is empty: give the stage-1 runs, 'run_m0;run_m1;...'")
  loaded = [inference.load_run(p) for p in runs]
  for run in loaded:
    if run.config.task != 'unimodal_ae':
      raise ConfigError(f'sbm.encoders: {run.run_dir} is a {run.config.task!r} run, not a '
                        'unimodal_ae one')
  return loaded


@register('sbm_score')
class SBMScoreTask(Task):
  wants_example_ids = True  # The loss looks up each example's precomputed latent.

  def __init__(self, config, info):
    self.options = _options(config, 'sbm', sbm_defaults())
    self.encoders = load_encoders(self.options.encoders)
    self.num_modalities = len(self.encoders)
    channels = info.image_shape[-1]
    if channels != polymnist.CHANNELS * self.num_modalities:
      raise ConfigError(f'{self.num_modalities} encoders but the data has {channels} channels '
                        f'({channels // polymnist.CHANNELS} stacked modalities)')
    self.latent_dims = [int(r.task.model.latent_dim) for r in self.encoders]
    self.sde = VPSDE(self.options.beta0, self.options.beta1)
    self._train_latents = None
    super().__init__(config, info)

  @property
  def latent_size(self) -> int:
    return sum(self.latent_dims)

  def modality_slices(self) -> list[slice]:
    edges = np.cumsum([0] + self.latent_dims)
    return [slice(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:])]

  def build_model(self):
    return ScoreMLP(dim=self.latent_size, hidden=self.options.hidden, depth=self.options.depth)

  # --- latents ------------------------------------------------------------------------------
  def encode(self, images) -> jax.Array:
    """Raw latents [B, sum d] (posterior means) of float images [B, H, W, 3M]."""
    parts = polymnist.split_modalities(images, self.num_modalities)
    return jnp.concatenate([r.predict_fns['encode'](r.variables, x)
                            for r, x in zip(self.encoders, parts)], -1)

  def decode(self, latents) -> list[jax.Array]:
    """Raw latents [B, sum d] -> M images [B, H, W, 3] (raw decoder values)."""
    return [r.predict_fns['decode'](r.variables, latents[:, s])
            for r, s in zip(self.encoders, self.modality_slices())]

  def encode_all(self, images: np.ndarray) -> np.ndarray:
    """Raw latents of uint8 or float images, in batches on the host."""
    fn = jax.jit(lambda x: self.encode(to_float(x)))
    return np.concatenate([np.asarray(fn(images[i:i + ENCODE_BATCH]))
                           for i in range(0, len(images), ENCODE_BATCH)])

  def prepare(self, train_images):
    if train_images is None:
      raise ConfigError("the sbm_score task encodes its training set once: data.loader='device'")
    latents = self.encode_all(np.asarray(train_images))
    self._train_latents = jnp.asarray(latents)
    std = np.maximum(latents.std(0), 1e-3)
    self._data_variables = {'latent_stats': {'mean': latents.mean(0), 'std': std}}

  def init_variables(self, rng):
    variables = self.model.init(rng, jnp.zeros((1, self.latent_size)), jnp.zeros((1,)))
    variables = flax.core.unfreeze(variables)
    for collection, values in (getattr(self, '_data_variables', None) or {}).items():
      variables[collection] = {k: jnp.asarray(v, jnp.float32) for k, v in values.items()}
    params = variables.pop('params')
    return params, variables

  @staticmethod
  def standardize(model_state, latents):
    stats = model_state['latent_stats']
    return (latents - stats['mean']) / stats['std']

  @staticmethod
  def unstandardize(model_state, x):
    stats = model_state['latent_stats']
    return x * stats['std'] + stats['mean']

  # --- training -----------------------------------------------------------------------------
  def augment(self, rng, batch):
    return batch  # The images are not used in training: their latents are.

  def batch_latents(self, model_state, batch) -> jax.Array:
    """The batch's standardised training latents (looked up by example id)."""
    if self._train_latents is None:
      raise ConfigError(f'{self.config.task}: the task was not prepared with its training images')
    return self.standardize(model_state, self._train_latents[batch['example_id']])

  def loss(self, params, model_state, extra, batch, rng):
    del extra
    x0 = self.batch_latents(model_state, batch)
    variables = {'params': params, **model_state}
    eps_fn = lambda x, t: self.model.apply(variables, x, t)
    loss = dsm_loss(eps_fn, self.sde, x0, rng, self.options.eps_train)
    return loss, ({'dsm': loss}, model_state)

  def score_fn(self, variables):
    """score(x, t) in the standardised latent space: -eps_hat / sigma_t."""
    def score(x, t):
      return self.model.apply(variables, x, t) / self.sde.marginal(t)[1][:, None]
    return score

  def predict_fns(self):
    def encode(variables, images):
      return self.standardize(variables, self.encode(images))
    return {'encode': encode}
