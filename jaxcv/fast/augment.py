"""airbench's augmentations: random translation with reflect padding, and alternating flip.

Alternating flip (arXiv 2404.00498, sec. 3.6): each training image gets one random flip bit,
drawn once; in even epochs it is shown flipped iff its bit is set, in odd epochs iff it is not.
Every image is thus seen both ways in any two consecutive epochs, instead of by chance. It needs
the example's identity and the epoch, which the loop passes as batch['example_id'] and
batch['step'] to tasks with `wants_example_ids` (see `AirbenchTask.augment`).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxcv.data import augment as augment_lib


@augment_lib.register('translate')
def translate(rng, images, pad: int = 2):
  """Random shift by up to `pad` pixels each way, reflect-padded (airbench's batch_crop)."""
  return augment_lib.random_crop(rng, images, padding=pad, mode='reflect')


def alternating_flip(images: jax.Array, example_ids: jax.Array, epoch: jax.Array,
                     seed: int) -> jax.Array:
  """Flips image i iff (its fixed random bit) XOR (epoch is odd)."""
  # A per-example bit that does not depend on the batch: hash the id into a key.
  bits = jax.vmap(lambda i: jax.random.bernoulli(jax.random.fold_in(jax.random.key(seed), i))
                  )(example_ids)
  flip = jnp.logical_xor(bits, epoch % 2 == 1)[:, None, None, None]
  return jnp.where(flip, images[:, :, ::-1, :], images)
