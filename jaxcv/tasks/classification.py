"""Supervised image classification: softmax cross-entropy with optional label smoothing."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from jaxcv.tasks.base import Task


def cross_entropy(logits: jax.Array, labels: jax.Array, label_smoothing: float = 0.0) -> jax.Array:
  """Per-example softmax cross-entropy against integer labels, in float32."""
  num_classes = logits.shape[-1]
  targets = optax.smooth_labels(jax.nn.one_hot(labels, num_classes), label_smoothing)
  return optax.softmax_cross_entropy(logits.astype(jnp.float32), targets)


def classification_metrics(logits: jax.Array, labels: jax.Array) -> dict[str, jax.Array]:
  return {'accuracy': jnp.mean(jnp.argmax(logits, -1) == labels)}


class ClassificationTask(Task):

  def loss(self, params, model_state, extra, batch, rng):
    del extra
    logits, new_model_state = self.model.apply(
        {'params': params, **model_state}, batch['image'], train=True,
        rngs={'dropout': rng}, mutable=list(model_state.keys()))
    loss = jnp.mean(cross_entropy(logits, batch['label'], self.config.label_smoothing))
    metrics = {'loss': loss, **classification_metrics(logits, batch['label'])}
    return loss, (metrics, dict(new_model_state))

  def predict_fns(self):
    def logits(variables, images):
      return self.model.apply(variables, images, train=False)
    return {'logits': logits}
