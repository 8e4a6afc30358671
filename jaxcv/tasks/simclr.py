"""SimCLR (Chen et al. 2020, arXiv 2002.05709; v2: arXiv 2006.10029) as a task of the single loop.

Each training image gives two views, both drawn on device by `config.data.augment` (the
contrastive ops of jaxcv/data/contrastive.py); the encoder (any zoo model, its pooled features)
and a projection MLP map the 2N views to z, and the NT-Xent loss contrasts every view with the
other 2N - 2 views of the *global* batch: under jit the batch is one sharded array, so the
similarity matrix spans every device's examples (GSPMD inserts the gathers), as SimCLR's
cross-replica negatives do.

Config section `config.simclr`:
  temperature     NT-Xent tau (SimCLR's CIFAR recipe: 0.5)
  projection_dim  width of z (128)
  hidden_dim      width of the projection MLP's hidden layers (0: the encoder's feature width)
  head            'v1': Dense-ReLU-Dense (SimCLR); 'v2': three layers, BatchNorm after every
                  Dense and ReLU between them (SimCLRv2's deeper head)

Predict functions: 'features' (the encoder's pooled features h, what the linear probe reads),
'projection' (z) and 'embedding' (z / |z|, what CADet's similarities use).
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from jaxcv import models
from jaxcv.errors import ConfigError
from jaxcv.tasks import register
from jaxcv.tasks.base import Task

HEADS = ('v1', 'v2')


def default_config() -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict({'temperature': 0.5, 'projection_dim': 128, 'hidden_dim': 0,
                                    'head': 'v1'})


def nt_xent(z1: jax.Array, z2: jax.Array, temperature: float) -> tuple[jax.Array, jax.Array]:
  """(mean NT-Xent loss, top-1 accuracy of finding the positive) of paired views [N, d].

  For the 2N views z_k (z1 then z2), l_k = -log(exp(s(k, k+)/tau) / sum_{j != k} exp(s(k, j)/tau))
  with s the cosine similarity and k+ the other view of k's image; the loss is the mean of l_k.
  """
  z = jnp.concatenate([z1, z2]).astype(jnp.float32)
  z = z / jnp.linalg.norm(z, axis=1, keepdims=True).clip(1e-12)
  n2 = z.shape[0]
  logits = (z @ z.T) / temperature
  logits = jnp.where(jnp.eye(n2, dtype=bool), -jnp.inf, logits)
  positives = (jnp.arange(n2) + n2 // 2) % n2
  log_probs = jax.nn.log_softmax(logits, axis=1)
  loss = -jnp.mean(jnp.take_along_axis(log_probs, positives[:, None], axis=1))
  accuracy = jnp.mean(jnp.argmax(logits, axis=1) == positives)
  return loss, accuracy


class ProjectionHead(nn.Module):
  """SimCLR's MLP g(h): 'v1' Dense-ReLU-Dense; 'v2' (Dense-BN-ReLU) x 2 then Dense-BN."""
  hidden_dim: int
  projection_dim: int
  head: str = 'v1'

  @nn.compact
  def __call__(self, h: jax.Array, train: bool) -> jax.Array:
    if self.head == 'v1':
      return nn.Dense(self.projection_dim)(nn.relu(nn.Dense(self.hidden_dim)(h)))
    norm = lambda: nn.BatchNorm(use_running_average=not train, momentum=0.9)
    for _ in range(2):
      h = nn.relu(norm()(nn.Dense(self.hidden_dim, use_bias=False)(h)))
    return norm()(nn.Dense(self.projection_dim, use_bias=False)(h))


class SimCLRNet(nn.Module):
  """encoder (a zoo Classifier; its pooled features) -> projection head. Returns (h, z)."""
  encoder: nn.Module
  projection: nn.Module

  def __call__(self, x: jax.Array, *, train: bool = False) -> tuple[jax.Array, jax.Array]:
    _, h = self.encoder(x, train=train, return_features=True)
    return h, self.projection(h, train).astype(jnp.float32)


@register('simclr')
class SimCLRTask(Task):

  def __init__(self, config, info):
    settings = config.get('simclr') or default_config()
    if settings.head not in HEADS:
      raise ConfigError(f'simclr.head must be one of {HEADS}, got {settings.head!r}')
    if not settings.temperature > 0:
      raise ConfigError(f'simclr.temperature must be > 0, got {settings.temperature}')
    self.settings = settings
    super().__init__(config, info)

  def build_model(self) -> nn.Module:
    dtype = jnp.bfloat16 if self.config.dtype == 'bfloat16' else jnp.float32
    encoder = models.build_model(self.config.model.name, num_classes=self.info.num_classes,
                                 dtype=dtype, **self.config.model.kwargs.to_dict())
    hidden = self.settings.hidden_dim or encoder.feature_dim
    return SimCLRNet(encoder, ProjectionHead(hidden, self.settings.projection_dim,
                                             self.settings.head))

  def augment(self, rng, batch):
    """Two independently augmented views of every image, stacked: [2N, H, W, C]."""
    rng1, rng2 = jax.random.split(rng)
    views = jnp.concatenate([self._augment(rng1, batch['image']),
                             self._augment(rng2, batch['image'])])
    return {**batch, 'image': views}

  def loss(self, params, model_state, extra, batch, rng) -> tuple[jax.Array, Any]:
    del extra
    (_, z), new_model_state = self.model.apply(
        {'params': params, **model_state}, batch['image'], train=True, rngs={'dropout': rng},
        mutable=list(model_state.keys()))
    z1, z2 = jnp.split(z, 2)
    loss, accuracy = nt_xent(z1, z2, self.settings.temperature)
    return loss, ({'loss': loss, 'contrastive_accuracy': accuracy}, dict(new_model_state))

  def predict_fns(self):
    def features(variables, images):
      return self.model.apply(variables, images, train=False)[0]

    def projection(variables, images):
      return self.model.apply(variables, images, train=False)[1]

    def embedding(variables, images):
      z = projection(variables, images)
      return z / jnp.linalg.norm(z, axis=1, keepdims=True).clip(1e-12)
    return {'features': features, 'projection': projection, 'embedding': embedding}
