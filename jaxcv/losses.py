"""Per-example classification losses shared by tasks, evaluators and attacks (float32, optax).

One definition, so that the loss a model is trained with, the loss an evaluator reports and the
loss an attack maximises are the same function.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax


def cross_entropy(logits: jax.Array, labels: jax.Array, label_smoothing: float = 0.0) -> jax.Array:
  """Per-example softmax cross-entropy against integer labels, in float32."""
  logits = logits.astype(jnp.float32)
  if isinstance(label_smoothing, (int, float)) and label_smoothing == 0:
    # No one-hot matrix: an attack's inner loop and every evaluation batch take this path.
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels)
  targets = optax.smooth_labels(jax.nn.one_hot(labels, logits.shape[-1]), label_smoothing)
  return optax.softmax_cross_entropy(logits, targets)


def soft_cross_entropy(logits: jax.Array, targets: jax.Array,
                       label_smoothing: float = 0.0) -> jax.Array:
  """Per-example softmax cross-entropy against probability targets [N, K], in float32."""
  targets = optax.smooth_labels(targets.astype(jnp.float32), label_smoothing)
  return optax.softmax_cross_entropy(logits.astype(jnp.float32), targets)
