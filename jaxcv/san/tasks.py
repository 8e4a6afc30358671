"""SAN and its two baselines as tasks of the single loop (docs/san.md).

san     config.san: num_clusters (K; 0 = the dataset's classes), con, rec, orth, sem (updated-
        semantic consistency), mi (optional IIC term between two views' SEAT assignments, 0 by
        default), half_t, lamb (its IIC options), and the view options below.
iic     config.iic: num_clusters, overcluster (extra head of that many clusters, its loss added),
        half_t (displacements in feature cells), lamb, view options.
picie   config.picie: num_clusters, temperature (of the centroid logits), within, cross (loss
        weights), count_decay (forgetting of the online k-means counts), view options.
View options (jaxcv/san/views.py): brightness, contrast, saturation, hue_shift, flip, max_shift.
The encoder and generator sizes are config.model.kwargs (jaxcv/san/models.py). Every task's
predict functions: 'segment' (cluster scores [N, h, w, K]) and 'embed' (L2-normalised pixel
embeddings [N, h, w, D], the space alignment and uniformity are measured in).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from jaxcv.data.augment import to_float
from jaxcv.errors import ConfigError
from jaxcv.san import losses
from jaxcv.san.models import ClusterNet, SANNet
from jaxcv.san.views import ViewOptions, to_first_view, two_views
from jaxcv.segmentation.clusters import l2_normalize
from jaxcv.tasks import register
from jaxcv.tasks.base import Task

VIEW_DEFAULTS = dataclasses.asdict(ViewOptions())


def batch_usage(scores: jax.Array) -> dict:
  """Step metrics of a batch's hard assignments: clusters holding any pixel, normalised entropy
  of their shares (1 = all K equally used)."""
  k = scores.shape[-1]
  share = jnp.mean(jax.nn.one_hot(jnp.argmax(scores, -1), k).reshape(-1, k), 0)
  entropy = -jnp.sum(jnp.where(share > 0, share * jnp.log(jnp.maximum(share, 1e-12)), 0.0))
  return {'clusters_used': jnp.sum(share > 0).astype(jnp.float32),
          'cluster_entropy_norm': entropy / jnp.log(k)}


class ClusterTask(Task):
  """Shared by the three: option section, K, the model built from model.kwargs, plain float
  images (the views are made inside the loss, where their transforms are known)."""
  section = ''
  defaults: dict = {}
  network = None
  network_options: dict = {}  # Fixed constructor arguments of `network` beyond model.kwargs.

  def __init__(self, config, info):
    given = config.get(self.section)
    given = given.to_dict() if given is not None else {}
    known = {'num_clusters': 0, **self.defaults, **VIEW_DEFAULTS}
    unknown = sorted(set(given) - set(known))
    if unknown:
      raise ConfigError(f'config.{self.section} has no key {unknown[0]!r}; known: '
                        f'{sorted(known)}')
    self.options = {**known, **given}
    self.num_clusters = int(self.options['num_clusters'] or info.num_classes)
    if self.num_clusters < 2:
      raise ConfigError(f'{self.section}.num_clusters must be >= 2, got {self.num_clusters}')
    self.views = ViewOptions(**{k: self.options[k] for k in VIEW_DEFAULTS})
    super().__init__(config, info)
    self.stride = self.model.stride

  def build_model(self):
    try:
      return self.network(num_clusters=self.num_clusters, **self.network_options,
                          **self.config.model.kwargs.to_dict())
    except TypeError as e:
      raise ConfigError(f'config.model.kwargs for task {self.config.task!r}: {e}') from None

  def augment(self, rng, batch):
    del rng
    return {**batch, 'image': to_float(batch['image'])}

  def init_variables(self, rng):
    image_shape = tuple(self.info.image_shape)
    if image_shape[0] % self.model.stride or image_shape[1] % self.model.stride:
      raise ConfigError(f'images {image_shape[:2]} must divide by the encoder stride '
                        f'{self.model.stride}')
    return super().init_variables(rng)


@register('san')
class SANTask(ClusterTask):
  section = 'san'
  defaults = {'con': 1.0, 'rec': 1.0, 'orth': 0.1, 'orth_on': 'generated', 'sem': 0.0,
              'mi': 0.0, 'half_t': 1, 'lamb': 1.0}
  ORTH_ON = ('generated', 'updated', 'both')

  def __init__(self, config, info):
    super().__init__(config, info)
    if self.options['orth_on'] not in self.ORTH_ON:
      raise ConfigError(f'san.orth_on must be one of {self.ORTH_ON}, got '
                        f'{self.options["orth_on"]!r}')
  network = SANNet

  def init_variables(self, rng):
    patch = self.model.patch
    h, w = self.info.image_shape[:2]
    if h % patch or w % patch:
      raise ConfigError(f'images {h}x{w} must divide by the generator patch {patch}')
    return super().init_variables(rng)

  def loss(self, params, model_state, extra, batch, rng):
    del extra
    o = self.options
    x = batch['image']
    variables = {'params': params, **model_state}
    out, new_state = self.model.apply(variables, x, train=True, mutable=['semantic'])
    terms = {
        'l_con': losses.consistency_loss(out['features'], out['generated']),
        'l_rec': losses.reconstruction_loss(out['reconstruction'], x),
        'l_orth': (losses.orthogonality_loss(out['batch_semantic'])
                   if o['orth_on'] in ('generated', 'both') else 0.0)
                  + (losses.orthogonality_loss(out['updated_semantic'])
                     if o['orth_on'] in ('updated', 'both') else 0.0),
        'l_sem': jnp.mean(jnp.sum(jnp.square(
            out['semantic'] - jax.lax.stop_gradient(out['updated_semantic'])), -1)),
    }
    weights = {'l_con': o['con'], 'l_rec': o['rec'], 'l_orth': o['orth'], 'l_sem': o['sem']}
    if o['mi']:
      # Optional IIC term: the SEAT assignments of a second, jittered and transformed view
      # against the same S (view 1 is the image itself).
      _, view2, t = two_views(rng, x, self.views, self.stride)
      out2 = self.model.apply(variables, view2, out['batch_semantic'], method='attend')
      p2, mask = to_first_view(out2['attention'], t)
      terms['l_mi'] = losses.iic_loss(out['attention'], p2, o['half_t'], o['lamb'], mask)
      weights['l_mi'] = o['mi']
    loss = sum(weights[k] * terms[k] for k in terms)
    metrics = {**terms, **batch_usage(out['logits']),
               'max_attention': jnp.mean(jnp.max(out['attention'], -1))}
    return loss, (metrics, {**model_state, **new_state})

  def predict_fns(self):
    def segment(variables, images):
      return self.model.apply(variables, images, reconstruct=False)['logits']

    def embed(variables, images):
      return self.model.apply(variables, images, method='embed')

    def reconstruct(variables, images):
      return self.model.apply(variables, images, reconstruct=True)['reconstruction']
    return {'segment': segment, 'embed': embed, 'reconstruct': reconstruct}


@register('iic_seg')
class IICTask(ClusterTask):
  section = 'iic'
  defaults = {'overcluster': 0, 'half_t': 1, 'lamb': 1.0}
  network = ClusterNet

  def build_model(self):
    self.network_options = {'overcluster': int(self.options['overcluster'])}
    return super().build_model()

  def loss(self, params, model_state, extra, batch, rng):
    del extra
    o = self.options
    view1, view2, t = two_views(rng, batch['image'], self.views, self.stride)
    variables = {'params': params, **model_state}
    out1, out2 = self.model.apply(variables, view1), self.model.apply(variables, view2)
    metrics, loss = batch_usage(out1['logits']), 0.0
    for head in ('logits', 'logits_over') if o['overcluster'] else ('logits',):
      p2, mask = to_first_view(jax.nn.softmax(out2[head]), t)
      term = losses.iic_loss(jax.nn.softmax(out1[head]), p2, o['half_t'], o['lamb'], mask)
      metrics[f'l_iic_{head}'] = term
      loss = loss + term
    return loss, (metrics, model_state)

  def predict_fns(self):
    return {'segment': lambda v, images: self.model.apply(v, images)['logits'],
            'embed': lambda v, images: self.model.apply(v, images)['features']}


@register('picie')
class PiCIETask(ClusterTask):
  section = 'picie'
  defaults = {'temperature': 0.1, 'within': 1.0, 'cross': 1.0, 'count_decay': 0.99}
  network = ClusterNet
  network_options = {'heads': False}

  def init_variables(self, rng):
    params, state = super().init_variables(rng)
    dim = self.model.dim
    # The online k-means state: centroids (seeded from pixels at the first step: count 0 means
    # unseeded) and decayed assignment counts.
    state['kmeans'] = {'centroids': jnp.zeros((self.num_clusters, dim)),
                       'counts': jnp.zeros((self.num_clusters,))}
    return params, state

  def update_centroids(self, kmeans, features, rng):
    """One mini-batch k-means step on features [M, D] (normalised): each centre moves to its
    pixels' mean at rate batch_count / (decayed count + batch_count); centres whose decayed
    count fell below one pixel are reseeded at random pixels (faiss re-seeds empty clusters)."""
    c, counts = kmeans['centroids'], kmeans['counts'] * self.options['count_decay']
    assign = jax.nn.one_hot(jnp.argmax(features @ c.T, -1), c.shape[0])
    batch_count = jnp.sum(assign, 0)
    batch_mean = (assign.T @ features) / jnp.maximum(batch_count, 1.0)[:, None]
    counts = counts + batch_count
    rate = (batch_count / jnp.maximum(counts, 1.0))[:, None]
    c = l2_normalize(c + rate * (batch_mean - c))
    dead = counts < 1.0
    seeds = features[jax.random.randint(rng, (c.shape[0],), 0, features.shape[0])]
    return {'centroids': jnp.where(dead[:, None], seeds, c),
            'counts': jnp.where(dead, 1.0, counts)}

  def loss(self, params, model_state, extra, batch, rng):
    del extra
    o = self.options
    view_rng, seed_rng = jax.random.split(rng)
    view1, view2, t = two_views(view_rng, batch['image'], self.views, self.stride)
    variables = {'params': params, **model_state}
    f1 = self.model.apply(variables, view1)['features']
    f2, mask = to_first_view(self.model.apply(variables, view2)['features'], t)
    kmeans = self.update_centroids(
        model_state['kmeans'], jax.lax.stop_gradient(f1.reshape(-1, f1.shape[-1])), seed_rng)
    c = jax.lax.stop_gradient(kmeans['centroids'])
    logits1, logits2 = f1 @ c.T / o['temperature'], f2 @ c.T / o['temperature']
    labels1, labels2 = jnp.argmax(logits1, -1), jnp.argmax(logits2, -1)
    within, cross = losses.picie_loss(logits1, logits2, labels1, labels2, mask)
    loss = o['within'] * within + o['cross'] * cross
    metrics = {'l_within': within, 'l_cross': cross, **batch_usage(logits1)}
    return loss, (metrics, {**model_state, 'kmeans': kmeans})

  def predict_fns(self):
    def segment(variables, images):
      f = self.model.apply(variables, images)['features']
      return f @ variables['kmeans']['centroids'].T

    return {'segment': segment,
            'embed': lambda v, images: self.model.apply(v, images)['features']}
