"""Robust accuracy under an ensemble of attacks: clean, per attack, and the worst case per
example. AutoAttack's standard version (APGD-CE, APGD-T, FAB-T, Square, L-inf) is the attack
`('aa', 'autoattack')` (`autoattack(steps=.., n_queries=..)` shrinks it for CPU runs; then it is
weaker than AutoAttack); a worst case over APGD-CE and APGD-T alone is only a proxy for it
(see jaxcv/attacks/ensemble.py and docs/attacks.md).

Config keys (besides the classification evaluator's split, dataset, batch_size, max_examples,
predict): eps, norm ('linf' | 'l2'), attacks = (('name', 'kind(key=value, ...)'), ...),
worst_case_of (names of the attacks the worst case is taken over; default all), seed.
Every attack sees every example; the attacks run on the task's eval-mode predict function
(BatchNorm running statistics). Settings are logged, since robust accuracy means little without
eps, steps, step size, restarts and BN mode.
"""

from __future__ import annotations

import logging

import jax
import jax.numpy as jnp

from jaxcv import attacks
from jaxcv.data import augment
from jaxcv.errors import ConfigError
from jaxcv.evaluators.base import register
from jaxcv.evaluators.classification import ClassificationEvaluator

log = logging.getLogger(__name__)

DEFAULT_ATTACKS = (('pgd20', 'pgd(steps=20, step_size=0.003)'), ('apgd_ce', 'apgd_ce'),
                   ('apgd_t', 'apgd_t'))


def _parse_specs(pairs) -> tuple[attacks.AttackSpec, ...]:
  specs = []
  for pair in pairs:
    if len(pair) != 2:
      raise ConfigError(f"robustness attacks are ('name', 'kind(...)') pairs, got {pair!r}")
    specs.append(attacks.parse_attack(*pair))
  names = [s.name for s in specs]
  if len(set(names)) != len(names) or {'clean', 'worst_case'} & set(names):
    raise ConfigError(f"robustness attack names must be unique and not 'clean'/'worst_case': "
                      f'{names}')
  return tuple(specs)


@register('robustness')
class RobustnessEvaluator(ClassificationEvaluator):

  def __init__(self, eval_config, config, task, mesh):
    super().__init__(eval_config, config, task, mesh)  # Data on device, padded batches.
    self.eps = float(eval_config.get('eps', 8 / 255))
    self.norm = eval_config.get('norm', 'linf')
    attacks.common.check_norm(self.norm)
    self.specs = _parse_specs(eval_config.get('attacks', DEFAULT_ATTACKS))
    worst_case_of = eval_config.get('worst_case_of')
    worst_case_of = tuple(worst_case_of) if worst_case_of else None
    rng = jax.random.key(eval_config.get('seed', 0))
    predict = task.predict_fns()[eval_config.get('predict', 'logits')]
    log.info('robustness: %d examples, eps=%.5f (%s), BN eval mode, attacks: %s, worst case '
             'over %s', self.num_examples, self.eps, self.norm,
             {s.name: (s.kind, s.settings()) for s in self.specs}, worst_case_of or 'all')

    def batch_sums(variables, arrays, index):
      batch = self.batch(arrays, index)
      predict_fn = lambda images: predict(variables, images).astype(jnp.float32)
      masks = attacks.robust_accuracy_masks(
          predict_fn, augment.to_float(batch['image']), batch['label'],
          jax.random.fold_in(rng, index), self.specs, eps=self.eps, norm=self.norm,
          worst_case_of=worst_case_of)
      return {name: jnp.sum(mask * batch['mask']) for name, mask in masks.items()}
    self._robust_sums = jax.jit(batch_sums)

  def run(self, variables):
    for name, value in self.mean_over_examples(self._robust_sums, variables).items():
      yield f'{name}_accuracy', value
