"""Named attack specs ('pgd(steps=20, step_size=0.003)', 'apgd_ce', 'apgd_t', ...) and the
per-example robustness of a batch under several of them: an AutoAttack-style ensemble.

'autoattack' (default version='standard') is AutoAttack's standard ensemble (Croce & Hein 2020):
APGD-CE, APGD-T, FAB-T and Square in the reference's order and settings, each on the examples the
earlier ones left robust (jaxcv/attacks/autoattack.py); `steps` / `n_queries` shrink it for tests
and CPU runs (then it is weaker than AutoAttack). A worst case over 'apgd_ce' and 'apgd_t' alone
is only an AutoAttack proxy, an upper bound on its robust accuracy, and must be labelled so.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Optional

import jax
import jax.numpy as jnp

from jaxcv import plugins
from jaxcv import specs as specs_lib
from jaxcv.attacks import common
from jaxcv.attacks.apgd import apgd, apgd_targeted
from jaxcv.attacks.autoattack import autoattack
from jaxcv.attacks.fab import fab_targeted
from jaxcv.attacks.pgd import fgsm, pgd
from jaxcv.attacks.square import square_linf
from jaxcv.errors import ConfigError

# name -> (function, defaults). Every attack gets eps and norm from the evaluator. A paper's
# package adds its own with ATTACKS.register (jaxcv/plugins.py).
ATTACKS = plugins.Registry('attack', entries={
    'fgsm': (lambda p, x, y, r, **kw: fgsm(p, x, y, **kw), {}),
    'pgd': (pgd, {'steps': 20, 'step_size': 2 / 255, 'restarts': 1}),
    'cw_pgd': (functools.partial(pgd, loss='cw'),  # PGD on the CW margin ("CW-inf").
               {'steps': 30, 'step_size': 0.8 / 255, 'restarts': 1}),
    'apgd_ce': (functools.partial(apgd, loss='ce'), {'steps': 100, 'restarts': 1}),
    'apgd_dlr': (functools.partial(apgd, loss='dlr'), {'steps': 100, 'restarts': 1}),
    'apgd_t': (apgd_targeted, {'steps': 100, 'num_targets': 9, 'restarts': 1}),
    'fab_t': (fab_targeted, {'steps': 100, 'num_targets': 9}),
    'square': (square_linf, {'n_queries': 5000}),
    'autoattack': (autoattack, {'version': 'standard', 'steps': 100, 'n_queries': 5000}),
})


@dataclasses.dataclass(frozen=True)
class AttackSpec:
  name: str
  kind: str
  kwargs: tuple  # Sorted (key, value) pairs, so that specs are hashable.

  def settings(self) -> dict[str, Any]:
    return {**ATTACKS[self.kind][1], **dict(self.kwargs)}


def parse_attack(name: str, spec: str) -> AttackSpec:
  """'pgd(steps=20, step_size=0.003)' -> AttackSpec; errors name the bad part."""
  parsed = specs_lib.parse(spec or '', f'attack {name}:')
  try:
    accepted = dict(ATTACKS[parsed.name][1])
  except plugins.UnknownNameError as e:
    raise ConfigError(f'attack {name}: {e}') from None
  if parsed.name == 'pgd':
    accepted.update(loss='ce', random_start=True)
  kwargs = specs_lib.bind(parsed, accepted, f'attack {name}:')
  return AttackSpec(name, parsed.name, tuple(sorted(kwargs.items())))


def run_attack(spec: AttackSpec, predict_fn, images, labels, rng, *, eps: float, norm: str):
  fn = ATTACKS[spec.kind][0]
  return fn(predict_fn, images, labels, rng, eps=eps, norm=norm, **spec.settings())


def robust_accuracy_masks(predict_fn: common.PredictFn, images: jax.Array, labels: jax.Array,
                          rng: jax.Array, specs: tuple[AttackSpec, ...], *, eps: float,
                          norm: str = 'linf', worst_case_of: Optional[tuple[str, ...]] = None
                          ) -> dict[str, jax.Array]:
  """Per-example correctness: 'clean', one entry per attack (each attack sees every example),
  and 'worst_case': correct under all attacks named in `worst_case_of` (default: all), the
  ensemble's robust accuracy."""
  names = [spec.name for spec in specs]
  worst_case_of = tuple(names) if worst_case_of is None else tuple(worst_case_of)
  unknown = set(worst_case_of) - set(names)
  if unknown:
    raise ConfigError(f'worst_case_of names attacks that are not run: {sorted(unknown)}')
  masks = {'clean': jnp.argmax(predict_fn(images), -1) == labels}
  worst = masks['clean']
  for index, spec in enumerate(specs):
    x_adv = run_attack(spec, predict_fn, images, labels, jax.random.fold_in(rng, index),
                       eps=eps, norm=norm)
    masks[spec.name] = jnp.argmax(predict_fn(x_adv), -1) == labels
    if spec.name in worst_case_of:
      worst = worst & masks[spec.name]
  masks['worst_case'] = worst
  return masks
