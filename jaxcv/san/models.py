"""SAN's networks and the baselines' (one pixel encoder for all three), Flax linen.

- `PixelEncoder`: a small CNN (GroupNorm, so no batch statistics) mapping images [N, H, W, 3] in
  [0, 1] to pixel embeddings [N, H/stride, W/stride, dim].
- `SemanticGenerator`: a ViT over the image's patches plus K learned query tokens; the K outputs,
  averaged over the batch, are the batch-wise semantic embeddings S [K, dim] (cluster centres).
- `SEAT`: semantic attention: pixel queries against semantic keys; A = softmax(q k^T / tau) is
  the soft cluster assignment, F_hat = A v the generated pixel features, and A^T F (normalised)
  the semantic features updated from the pixels.
- `SANNet`: encoder + generator + SEAT + an image decoder (for L_Rec). S is batch-wise: like
  BatchNorm, training uses the batch's S and keeps a running mean (collection 'semantic') that
  evaluation uses, so a pixel's cluster never depends on the other images of its batch.
- `ClusterNet`: encoder + 1x1 softmax heads (IIC: main K, optional overclustering head), or the
  encoder alone (PiCIE: its K centroids live in the task's k-means state, collection 'kmeans').
The architecture is reconstructed (no official SAN code): docs/san.md.
"""

from __future__ import annotations

from typing import Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxcv.models.vit import EncoderBlock
from jaxcv.segmentation.clusters import l2_normalize

INPUT_MEAN, INPUT_STD = 0.5, 0.25


class PixelEncoder(nn.Module):
  """Stride-2 conv stages down to `stride`, then `depth` 3x3 conv blocks, then a 1x1 to dim."""
  width: int = 32
  dim: int = 32
  stride: int = 4
  depth: int = 2
  groups: int = 8

  @nn.compact
  def __call__(self, images: jax.Array) -> jax.Array:
    if self.stride < 1 or self.stride & (self.stride - 1):
      raise ValueError(f'encoder stride must be a power of two, got {self.stride}')
    x = (images - INPUT_MEAN) / INPUT_STD
    norm = lambda: nn.GroupNorm(num_groups=min(self.groups, self.width))
    stages = max(self.stride.bit_length() - 1, 0)
    for i in range(stages):
      x = nn.relu(norm()(nn.Conv(self.width, (3, 3), strides=2, name=f'down{i}')(x)))
    for i in range(self.depth):
      # Residual 3x3 blocks, the second dilated: context beyond a few pixels at little cost.
      y = nn.Conv(self.width, (3, 3), kernel_dilation=1 + i % 2, name=f'block{i}')(x)
      x = nn.relu(x + norm()(y)) if x.shape[-1] == self.width else nn.relu(norm()(y))
    return nn.Conv(self.dim, (1, 1), name='proj')(x)


class SemanticGenerator(nn.Module):
  """ViT: patch tokens + K query tokens, `depth` blocks; returns the K outputs [N, K, dim]."""
  num_semantic: int
  dim: int = 32
  hidden: int = 64
  depth: int = 2
  heads: int = 4
  patch: int = 8

  @nn.compact
  def __call__(self, images: jax.Array) -> jax.Array:
    n = images.shape[0]
    x = (images - INPUT_MEAN) / INPUT_STD
    x = nn.Conv(self.hidden, (self.patch, self.patch), strides=self.patch, padding='VALID',
                name='patches')(x)
    x = x.reshape(n, -1, self.hidden)
    x = x + self.param('pos', nn.initializers.normal(0.02), (1, x.shape[1], self.hidden))
    queries = self.param('queries', nn.initializers.normal(1.0),
                         (1, self.num_semantic, self.hidden))
    x = jnp.concatenate([jnp.broadcast_to(queries, (n, *queries.shape[1:])), x], axis=1)
    for i in range(self.depth):
      x = EncoderBlock(self.heads, 2 * self.hidden, 0.0, jnp.float32, name=f'block{i}')(
          x, train=False)
    x = nn.LayerNorm(name='norm')(x[:, :self.num_semantic])
    return nn.Dense(self.dim, name='out')(x)


class SEAT(nn.Module):
  """Semantic attention. project=False: queries / keys / values are the normalised embeddings
  themselves (A = softmax(cos(F, S) / tau): nearest-centre soft assignment); project=True:
  learned linear projections of them (queries from pixels, keys and values from S)."""
  temperature: float = 0.1
  project: bool = False

  @nn.compact
  def __call__(self, features: jax.Array, semantic: jax.Array) -> dict:
    f, s = l2_normalize(features), l2_normalize(semantic)
    q, k, v = f, s, s
    if self.project:
      dim = f.shape[-1]
      q = l2_normalize(nn.Dense(dim, use_bias=False, name='query')(f))
      k = l2_normalize(nn.Dense(dim, use_bias=False, name='key')(s))
      v = nn.Dense(dim, use_bias=False, name='value')(s)
    logits = jnp.einsum('...d,kd->...k', q, k) / self.temperature
    attention = jax.nn.softmax(logits, axis=-1)
    generated = jnp.einsum('...k,kd->...d', attention, v)
    flat_a = attention.reshape(-1, attention.shape[-1])
    updated = l2_normalize(flat_a.T @ f.reshape(-1, f.shape[-1]))  # [K, D]: pixels -> centres.
    return {'logits': logits, 'attention': attention, 'generated': generated,
            'features': f, 'semantic': s, 'updated_semantic': updated}


class Decoder(nn.Module):
  """Pixel features [N, h, w, D] -> image [N, h * stride, w * stride, 3] in [0, 1]."""
  width: int = 32
  stride: int = 4

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    x = nn.relu(nn.Conv(self.width, (3, 3), name='in')(x))
    for i in range(max(self.stride.bit_length() - 1, 0)):
      n, h, w, c = x.shape
      x = jax.image.resize(x, (n, 2 * h, 2 * w, c), 'nearest')
      x = nn.relu(nn.Conv(self.width, (3, 3), name=f'up{i}')(x))
    return nn.sigmoid(nn.Conv(3, (3, 3), name='out')(x))


class SANNet(nn.Module):
  """Returns SEAT's outputs plus 'reconstruction' (from `rec_from`: 'generated' F_hat or
  'pixel' F) and 'batch_semantic' (this batch's S, before the running mean)."""
  num_clusters: int
  width: int = 32
  dim: int = 32
  stride: int = 4
  depth: int = 2
  vit_hidden: int = 64
  vit_depth: int = 2
  vit_heads: int = 4
  patch: int = 8
  temperature: float = 0.1
  project: bool = False
  rec_from: str = 'pixel'
  semantic_momentum: float = 0.9
  decoder_width: int = 0  # 0: width.

  def setup(self):
    self.encoder = PixelEncoder(self.width, self.dim, self.stride, self.depth)
    self.generator = SemanticGenerator(self.num_clusters, self.dim, self.vit_hidden,
                                       self.vit_depth, self.vit_heads, self.patch)
    self.seat = SEAT(self.temperature, self.project)
    self.decoder = Decoder(self.decoder_width or self.width, self.stride)
    self.running = self.variable('semantic', 'running', jnp.zeros,
                                 (self.num_clusters, self.dim))
    self.seen = self.variable('semantic', 'seen', lambda: jnp.zeros((), jnp.bool_))

  def embed(self, images: jax.Array) -> jax.Array:
    return l2_normalize(self.encoder(images))

  def attend(self, images: jax.Array, semantic: jax.Array) -> dict:
    """SEAT's outputs for `images` against given semantic embeddings (a second view)."""
    return self.seat(self.encoder(images), semantic)

  def __call__(self, images: jax.Array, train: bool = False, reconstruct: Optional[bool] = None):
    features = self.encoder(images)
    if train or self.is_initializing():
      semantic = jnp.mean(self.generator(images), axis=0)  # Batch-wise: shared by the batch.
      if train and not self.is_initializing():
        m = jnp.where(self.seen.value, self.semantic_momentum, 0.0)
        self.running.value = m * self.running.value + (1 - m) * jax.lax.stop_gradient(semantic)
        self.seen.value = jnp.ones((), jnp.bool_)
    else:
      semantic = self.running.value
    out = self.seat(features, semantic)
    out['batch_semantic'] = semantic
    if reconstruct if reconstruct is not None else (train or self.is_initializing()):
      source = out['generated'] if self.rec_from == 'generated' else out['features']
      out['reconstruction'] = self.decoder(source)
    return out


class ClusterNet(nn.Module):
  """Encoder + optional 1x1 heads, for the baselines: 'features' (normalised) [N, h, w, dim];
  with heads (IIC), 'logits' [N, h, w, K] and, with overcluster > 0, 'logits_over'. Without
  (PiCIE), the K centroids are the task's k-means state."""
  num_clusters: int
  heads: bool = True
  overcluster: int = 0
  width: int = 32
  dim: int = 32
  stride: int = 4
  depth: int = 2

  @nn.compact
  def __call__(self, images: jax.Array, train: bool = False) -> dict:
    del train
    features = PixelEncoder(self.width, self.dim, self.stride, self.depth, name='encoder')(images)
    out = {'features': l2_normalize(features)}
    if self.heads:
      hidden = nn.relu(features)  # IIC's heads act on the trunk's activations.
      out['logits'] = nn.Conv(self.num_clusters, (1, 1), name='head')(hidden)
      if self.overcluster:
        out['logits_over'] = nn.Conv(self.overcluster, (1, 1), name='head_over')(hidden)
    return out
