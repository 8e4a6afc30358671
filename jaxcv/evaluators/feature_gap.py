"""The natural-vs-adversarial feature gap (AFD's motivation figure): how far the features that
feed the classifier move under a PGD attack.

Yields, averaged over examples: `l2` = ||f(x) - f(x_adv)||, `relative_l2` = that over ||f(x)||,
and `cosine_distance` = 1 - cos(f(x), f(x_adv)). The paper's exact metric is not recovered
(docs/afd.md), so all three are reported. Needs the task's 'features' predict function
((variables, images) -> (logits, features)), else the model's pooled features; the attack
targets 'logits' in eval mode.

Config keys: split, dataset, batch_size, max_examples (as the classification evaluator), eps,
step_size, steps, norm, seed.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxcv import attacks
from jaxcv.data import augment
from jaxcv.evaluators.base import register
from jaxcv.evaluators.classification import ClassificationEvaluator


@register('feature_gap')
class FeatureGapEvaluator(ClassificationEvaluator):

  def __init__(self, eval_config, config, task, mesh):
    super().__init__(eval_config, config, task, mesh)
    fns = task.predict_fns()
    # Tasks without a 'features' function (plain classification): the zoo's pooled features.
    features_fn = fns.get('features') or (lambda variables, images: task.model.apply(
        variables, images, train=False, return_features=True))
    logits_fn = fns['logits']
    eps = float(eval_config.get('eps', 8 / 255))
    settings = dict(eps=eps, step_size=float(eval_config.get('step_size', 2 / 255)),
                    steps=int(eval_config.get('steps', 10)), norm=eval_config.get('norm', 'linf'))
    rng = jax.random.key(eval_config.get('seed', 0))

    def batch_sums(variables, arrays, index):
      batch = self.batch(arrays, index)
      images = augment.to_float(batch['image'])
      x_adv = attacks.pgd(lambda x: logits_fn(variables, x), images, batch['label'],
                          jax.random.fold_in(rng, index), **settings)
      _, f = features_fn(variables, images)
      _, f_adv = features_fn(variables, x_adv)
      f, f_adv = f.astype(jnp.float32), f_adv.astype(jnp.float32)
      distance = jnp.linalg.norm(f - f_adv, axis=-1)
      norm = jnp.maximum(jnp.linalg.norm(f, axis=-1), 1e-8)
      cos = jnp.sum(f * f_adv, -1) / (norm * jnp.maximum(jnp.linalg.norm(f_adv, axis=-1), 1e-8))
      mask = batch['mask']
      return {'l2': jnp.sum(distance * mask), 'relative_l2': jnp.sum(distance / norm * mask),
              'cosine_distance': jnp.sum((1 - cos) * mask)}
    self._gap_sums = jax.jit(batch_sums)

  def run(self, variables):
    yield from self.mean_over_examples(self._gap_sums, variables).items()
