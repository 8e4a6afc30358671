"""AutoAttack's standard version (Croce & Hein, ICML 2020; `fra31/auto-attack`, `autoattack.py`)
under L-inf: APGD-CE (1 restart), APGD-T (9 targets, 1 restart each), FAB-T (9 targets, 1
restart) and Square (5000 queries, p_init 0.8), 100 iterations each, run in that order, each on
the examples that every earlier attack left correctly classified. The robust accuracy of its
output is what RobustBench reports as AutoAttack's.

The cascade needs no index bookkeeping: every attack returns its input where it does not fool
the model, and leaves inputs that are already misclassified untouched, so feeding each attack the
previous one's output attacks exactly the still-robust examples (with fixed shapes, so it jits;
each attack skips its work once nothing is left to fool). `steps` and `n_queries` shrink the
budget for tests and CPU runs; the result is then weaker than AutoAttack's and must be labelled
so.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from jaxcv.attacks import common
from jaxcv.attacks.apgd import apgd, apgd_targeted
from jaxcv.attacks.fab import fab_targeted
from jaxcv.attacks.square import square_linf
from jaxcv.errors import ConfigError

VERSIONS = ('standard',)
STANDARD_STAGES = ('apgd_ce', 'apgd_t', 'fab_t', 'square')


def standard_stages(*, steps: int = 100, n_queries: int = 5000, num_targets: int = 9):
  """(name, attack(predict_fn, images, labels, rng, eps=..., norm=...)) in the reference's order,
  with the reference's settings for the standard version."""
  return (
      ('apgd_ce', functools.partial(apgd, loss='ce', steps=steps, restarts=1)),
      ('apgd_t', functools.partial(apgd_targeted, steps=steps, num_targets=num_targets,
                                   restarts=1)),
      ('fab_t', functools.partial(fab_targeted, steps=steps, num_targets=num_targets)),
      ('square', functools.partial(square_linf, n_queries=n_queries)),
  )


def autoattack_stages(predict_fn: common.PredictFn, images: jax.Array, labels: jax.Array,
                      rng: jax.Array, *, eps: float, norm: str = 'linf',
                      version: str = 'standard', steps: int = 100, n_queries: int = 5000,
                      num_targets: int = 9) -> dict[str, jax.Array]:
  """The adversarial images after each stage of the cascade ({'apgd_ce': ..., ..., 'square':
  ...}); the last one is AutoAttack's output."""
  if version not in VERSIONS:
    raise ConfigError(f'autoattack version must be one of {VERSIONS}, got {version!r}')
  if norm != 'linf':
    raise ConfigError(f"autoattack is implemented for norm 'linf' (FAB-T and Square are L-inf "
                      f'only), got {norm!r}')
  x_adv = jax.lax.stop_gradient(images.astype(jnp.float32))
  outputs = {}
  for name, attack in standard_stages(steps=steps, n_queries=n_queries, num_targets=num_targets):
    # The input is the previous output: fooled examples come in misclassified and stay as they
    # are; the eps-ball of the others is still around their clean image. Every attack gets the
    # same rng, as the reference seeds every attack with the same seed.
    x_adv = attack(predict_fn, x_adv, labels, rng, eps=eps, norm=norm)
    outputs[name] = x_adv
  return outputs


def autoattack(predict_fn: common.PredictFn, images: jax.Array, labels: jax.Array,
               rng: jax.Array, *, eps: float, norm: str = 'linf', version: str = 'standard',
               steps: int = 100, n_queries: int = 5000, num_targets: int = 9) -> jax.Array:
  """AutoAttack (standard version): per example the first stage's fooling image, else the clean
  image."""
  return autoattack_stages(predict_fn, images, labels, rng, eps=eps, norm=norm, version=version,
                           steps=steps, n_queries=n_queries, num_targets=num_targets)['square']
