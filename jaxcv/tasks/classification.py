"""Supervised image classification: softmax cross-entropy with optional label smoothing.

Label-mixing augmentations (mixup, cutmix: `config.data.mixing`, see jaxcv/data/augment.py) put a
'target' probability array [N, K] into the batch; the loss then uses it instead of the integer
'label', which stays in the batch (the training accuracy is measured against it).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxcv.data import augment as augment_lib
from jaxcv.losses import cross_entropy, soft_cross_entropy  # noqa: F401 - re-exported
from jaxcv.tasks import register
from jaxcv.tasks.base import Task


def classification_metrics(logits: jax.Array, labels: jax.Array) -> dict[str, jax.Array]:
  return {'accuracy': jnp.mean(jnp.argmax(logits, -1) == labels)}


@register('classification')
class ClassificationTask(Task):

  def __init__(self, config, info):
    super().__init__(config, info)
    # Optional: configs that use label mixing add `config.data.mixing` (e.g. 'mixup(alpha=1.0)').
    self._mix = augment_lib.build_mixing(config.data.get('mixing', ''), info.num_classes)

  def augment(self, rng, batch):
    if self._mix is None:
      return super().augment(rng, batch)
    image_rng, mix_rng = jax.random.split(rng)
    batch = super().augment(image_rng, batch)
    images, targets = self._mix(mix_rng, batch['image'], batch['label'])
    return {**batch, 'image': images, 'target': targets}

  def forward(self, params, model_state, batch, rng):
    """(train-mode logits, updated model state): what `loss` differentiates through."""
    logits, new_model_state = self.model.apply(
        {'params': params, **model_state}, batch['image'], train=True,
        rngs={'dropout': rng}, mutable=list(model_state.keys()))
    return logits, dict(new_model_state)

  def loss(self, params, model_state, extra, batch, rng):
    del extra
    logits, new_model_state = self.forward(params, model_state, batch, rng)
    if 'target' in batch:
      per_example = soft_cross_entropy(logits, batch['target'], self.config.label_smoothing)
    else:
      per_example = cross_entropy(logits, batch['label'], self.config.label_smoothing)
    loss = jnp.mean(per_example)
    metrics = {'loss': loss, **classification_metrics(logits, batch['label'])}
    return loss, (metrics, new_model_state)

  def predict_fns(self):
    def logits(variables, images):
      return self.model.apply(variables, images, train=False)
    return {'logits': logits}
