"""The weight average the loop keeps beside the trained parameters (`TrainState.ema_params`).

`config.averaging.kind`:
  'ema'      exponential moving average with decay `config.ema_decay` (0 = none kept).
  'uniform'  the plain mean of the iterates from `averaging.start_step` on (SWA-style; ERM++'s
             model parameter averaging, MPA). As ERM++'s `MovingAvg.update_sma`: after update
             number `step` (1, 2, ...), before `start_step` the average is a copy of the
             parameters; from it on `avg <- (avg * count + params) / (count + 1)` with
             `count = step - start_step + 1`, so that the average is the mean of the iterates
             start_step - 1, ..., step.

`config.averaging.batch_stats` says which model state (BatchNorm statistics) the averaged
parameters are evaluated with (`TrainState.ema_model_state`):
  'online'   the trained model's own (ema_model_state stays None; the loop's historical default).
  'refresh'  their own, updated after every step by a train-mode forward pass of the averaged
             parameters on the step's batch (the official ERM++ code: only trainable
             parameters are averaged, BN buffers change through the refresh alone).
  'average'  averaged like the parameters (the online model's statistics) and then refreshed
             on the batch (DomainBed's ERMPlusPlus, which averages the whole state dict).
Evaluation and `init_checkpoint`/`inference` readers take (ema_params, ema_model_state) together.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import optax

from jaxcv.errors import ConfigError

KINDS = ('ema', 'uniform')
BATCH_STATS = ('online', 'refresh', 'average')
DEFAULTS = {'kind': 'ema', 'start_step': 1, 'batch_stats': 'online'}


def settings(config) -> ml_collections.ConfigDict:
  """config.averaging, or the defaults for configs saved before it existed."""
  return config.get('averaging') or ml_collections.ConfigDict(DEFAULTS)


def check(config) -> None:
  """ConfigError for settings the loop cannot honour."""
  a = settings(config)
  if a.kind not in KINDS:
    raise ConfigError(f'averaging.kind must be one of {KINDS}, got {a.kind!r}')
  if a.batch_stats not in BATCH_STATS:
    raise ConfigError(f'averaging.batch_stats must be one of {BATCH_STATS}, got '
                      f'{a.batch_stats!r}')
  if a.kind == 'uniform' and a.start_step < 1:
    raise ConfigError('averaging.start_step counts updates from 1 (the average then starts '
                      f'from the initial weights); got {a.start_step}')


def enabled(config) -> bool:
  """Whether the loop keeps an average at all."""
  return settings(config).kind == 'uniform' or bool(config.ema_decay)


def keeps_model_state(config) -> bool:
  """Whether the average carries its own model state (TrainState.ema_model_state)."""
  return enabled(config) and settings(config).batch_stats != 'online'


def uniform_update(average: Any, params: Any, step: jax.Array, start_step: int) -> Any:
  """ERM++'s update_sma for one tree: `step` is the number of updates done, `params` the
  newest iterate (see the module docstring)."""
  count = (step - start_step + 1).astype(jnp.float32)
  weight = jnp.where(count >= 1, 1.0 / (count + 1.0), 1.0)  # 1: copy the parameters.
  return jax.tree.map(lambda a, p: (a + weight * (p - a)).astype(a.dtype), average, params)


def update(config, task, state, batch: dict, rng: jax.Array):
  """`state` after an optimizer update (step already incremented) with its average updated.

  The refresh is a train-mode forward pass of the averaged weights on the step's batch, which
  only the model state comes out of (`task.refresh_model_state`).
  """
  if not enabled(config):
    return state
  a = settings(config)
  if a.kind == 'ema':
    average = optax.incremental_update(state.params, state.ema_params, 1.0 - config.ema_decay)
  else:
    average = uniform_update(state.ema_params, state.params, state.step, a.start_step)
  model_state = state.ema_model_state
  if model_state is not None and model_state:
    if a.batch_stats == 'average':
      model_state = (uniform_update(model_state, state.model_state, state.step, a.start_step)
                     if a.kind == 'uniform' else
                     optax.incremental_update(state.model_state, model_state,
                                              1.0 - config.ema_decay))
    model_state = task.refresh_model_state(average, model_state, batch, rng)
  return state.replace(ema_params=average, ema_model_state=model_state)


EVAL_WEIGHTS = ('auto', 'ema', 'plain')


def evaluator_uses_average(config, name: str) -> bool:
  """Whether evaluator `name` sees the averaged weights: its `weights` key, 'ema' or 'plain',
  or 'auto' (the default): config.eval_with_ema, when an average is kept. One run can so log
  the trained and the averaged model side by side (e.g. `val` and `val_plain`)."""
  weights = config.evals[name].get('weights', 'auto')
  if weights not in EVAL_WEIGHTS:
    raise ConfigError(f'evals.{name}.weights must be one of {EVAL_WEIGHTS}, got {weights!r}')
  if weights == 'ema' and not enabled(config):
    raise ConfigError(f"evals.{name}.weights='ema' but the run keeps no average (set "
                      "ema_decay or averaging.kind='uniform')")
  return config.eval_with_ema if weights == 'auto' else weights == 'ema'
