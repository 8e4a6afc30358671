"""Optimizers and learning-rate schedules from the config, all from optax."""

from __future__ import annotations

from typing import Any, Optional

import jax
import ml_collections
import optax

from jaxcv.errors import ConfigError


def build_schedule(config: ml_collections.ConfigDict, total_steps: int) -> optax.Schedule:
  s = config.schedule
  total_steps = max(total_steps, 1)
  decay_steps = max(total_steps - s.warmup_steps, 1)
  if s.name == 'constant':
    main = optax.constant_schedule(s.lr)
  elif s.name == 'cosine':
    main = optax.cosine_decay_schedule(s.lr, decay_steps, alpha=s.end_factor)
  elif s.name == 'linear':
    main = optax.linear_schedule(s.lr, s.lr * s.end_factor, decay_steps)
  elif s.name == 'step':
    boundaries = {int(f * total_steps) - s.warmup_steps: s.step_factor for f in s.step_boundaries}
    main = optax.piecewise_constant_schedule(s.lr, boundaries)
  elif s.name == 'onecycle':
    return optax.cosine_onecycle_schedule(total_steps, s.lr)
  else:
    raise ConfigError(f'unknown schedule {s.name!r}; known: constant, cosine, linear, step, '
                      'onecycle')
  if s.warmup_steps:
    warmup = optax.linear_schedule(0.0, s.lr, s.warmup_steps)
    return optax.join_schedules([warmup, main], [s.warmup_steps])
  return main


def _decay_mask(params: Any, decay_norm_and_bias: bool) -> Any:
  """True for parameters that get weight decay; by default only kernels (ndim > 1) if asked."""
  return jax.tree.map(lambda p: decay_norm_and_bias or p.ndim > 1, params)


def build_optimizer(config: ml_collections.ConfigDict, schedule: optax.Schedule,
                    trainable_labels: Optional[Any] = None) -> optax.GradientTransformation:
  o = config.optimizer
  mask = lambda params: _decay_mask(params, o.decay_norm_and_bias)
  chain = []
  if o.grad_clip_norm:
    chain.append(optax.clip_by_global_norm(o.grad_clip_norm))
  if o.name in ('sgd', 'adam'):
    # Coupled (L2) decay, added to the gradient as PyTorch's SGD and Adam do.
    if o.weight_decay:
      chain.append(optax.add_decayed_weights(o.weight_decay, mask))
    if o.name == 'sgd':
      chain.append(optax.sgd(schedule, momentum=o.momentum or None, nesterov=o.nesterov))
    else:
      chain.append(optax.adam(schedule, b1=o.b1, b2=o.b2))
  elif o.name == 'adamw':
    chain.append(optax.adamw(schedule, b1=o.b1, b2=o.b2, weight_decay=o.weight_decay, mask=mask))
  elif o.name == 'lamb':
    chain.append(optax.lamb(schedule, b1=o.b1, b2=o.b2, weight_decay=o.weight_decay, mask=mask))
  else:
    raise ConfigError(f'unknown optimizer {o.name!r}; known: sgd, adam, adamw, lamb')
  tx = optax.chain(*chain)
  if trainable_labels is not None:
    tx = optax.multi_transform({'train': tx, 'freeze': optax.set_to_zero()}, trainable_labels)
  return tx
