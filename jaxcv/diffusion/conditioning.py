"""What a denoiser is conditioned on, and the wrapper that feeds it to the UNet.

- Class labels -> a learned embedding sequence [N, L, context_dim] that the UNet cross-attends
  to, with an extra "null" class (index num_classes) for classifier-free guidance (Ho & Salimans
  2021); `drop_labels` replaces a fraction of labels by it during training.
- Text: precomputed embeddings [N, L, D] passed as the context; the null context is zeros.
- An image condition (super-resolution: the low-resolution image upsampled back, or its
  latent) is concatenated with the noisy input along channels, as in the LDM-scaling paper's
  downstream tasks (Mei et al. 2024, Fig. 2). `low_res_condition` makes it from a clean image.
"""

from __future__ import annotations

from typing import Optional

import flax.linen as nn
import jax
import jax.numpy as jnp


class ClassEmbedding(nn.Module):
  """labels int [N] (num_classes = null) -> context [N, seq_len, context_dim]."""
  num_classes: int
  context_dim: int
  seq_len: int = 1

  @nn.compact
  def __call__(self, labels: jax.Array) -> jax.Array:
    table = nn.Embed(self.num_classes + 1, self.seq_len * self.context_dim,
                     embedding_init=nn.initializers.normal(1.0), name='table')
    return table(labels).reshape(labels.shape[0], self.seq_len, self.context_dim)


def null_labels(like: jax.Array, num_classes: int) -> jax.Array:
  return jnp.full_like(like, num_classes)


def drop_labels(rng: jax.Array, labels: jax.Array, probability: float, num_classes: int):
  """Each label becomes the null class with `probability` (classifier-free guidance training)."""
  drop = jax.random.bernoulli(rng, probability, labels.shape)
  return jnp.where(drop, num_classes, labels)


def drop_context(rng: jax.Array, context: jax.Array, probability: float):
  """Each example's context becomes the null (all-zero) context with `probability`."""
  drop = jax.random.bernoulli(rng, probability, context.shape[:1])
  return jnp.where(drop[:, None, None], 0.0, context)


def low_res_condition(images: jax.Array, factor: int) -> jax.Array:
  """The super-resolution input: `images` downsampled by `factor` (antialiased), then upsampled
  back bilinearly to the original size, so it can be concatenated with the noisy input."""
  n, h, w, c = images.shape
  small = jax.image.resize(images, (n, h // factor, w // factor, c), 'linear', antialias=True)
  return jax.image.resize(small, (n, h, w, c), 'linear')


class ConditionalDenoiser(nn.Module):
  """The UNet plus its conditioning: `(x_t, t, labels | context, image_cond) -> output`.

  num_classes = 0 means no class embedding (unconditional or text-conditioned models).
  """
  unet: nn.Module
  num_classes: int = 0
  context_dim: int = 0
  context_len: int = 1

  @nn.compact
  def __call__(self, x, t, labels: Optional[jax.Array] = None,
               context: Optional[jax.Array] = None, image_cond: Optional[jax.Array] = None, *,
               train: bool = False) -> jax.Array:
    if image_cond is not None:
      x = jnp.concatenate([x, image_cond.astype(x.dtype)], axis=-1)
    if labels is not None:
      context = ClassEmbedding(self.num_classes, self.context_dim, self.context_len,
                               name='class_embedding')(labels)
    return self.unet(x, jnp.asarray(t, jnp.float32), context, train=train)
