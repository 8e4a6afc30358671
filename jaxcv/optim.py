"""Optimizers and learning-rate schedules from the config, all from optax.

Optional keys a config file may add to `config.optimizer` (read with defaults, so older configs
need nothing):
  param_groups: ((regex, lr_scale, weight_decay_scale), ...): parameters whose path
    ('group1/norm1/bias') matches get their step scaled by lr_scale and their weight decay by
    weight_decay_scale (first match wins), like PyTorch parameter groups (airbench's BN biases).
  freeze_after: ((regex, step), ...): matching parameters stop changing from `step` on (as if
    `requires_grad` were switched off, e.g. airbench's whitening bias after 3 epochs).
And to `config.schedule`, for name='triangle': start_factor, peak_fraction (end via end_factor).
"""

from __future__ import annotations

import re
from typing import Any, Optional

import jax
import jax.numpy as jnp
import ml_collections
import optax

from jaxcv import parallel
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
    factors = tuple(s.step_factors) or (s.step_factor,) * len(s.step_boundaries)
    if len(factors) != len(s.step_boundaries):
      raise ConfigError(f'schedule.step_factors has {len(factors)} factors for '
                        f'{len(s.step_boundaries)} step_boundaries')
    boundaries = {}
    for fraction, factor in zip(s.step_boundaries, factors):
      step = int(fraction * total_steps) - s.warmup_steps
      boundaries[step] = boundaries.get(step, 1.0) * factor  # Short runs may merge boundaries.
    main = optax.piecewise_constant_schedule(s.lr, boundaries)
  elif s.name == 'onecycle':
    return optax.cosine_onecycle_schedule(total_steps, s.lr)
  elif s.name == 'triangle':
    return triangle_schedule(total_steps, s.lr, s.get('start_factor', 0.0),
                             s.get('peak_fraction', 0.5), s.end_factor)
  else:
    raise ConfigError(f'unknown schedule {s.name!r}; known: constant, cosine, linear, step, '
                      'onecycle, triangle')
  if s.warmup_steps:
    warmup = optax.linear_schedule(0.0, s.lr, s.warmup_steps)
    return optax.join_schedules([warmup, main], [s.warmup_steps])
  return main


def triangle_schedule(total_steps: int, lr: float, start_factor: float, peak_fraction: float,
                      end_factor: float) -> optax.Schedule:
  """Linear from lr*start_factor up to lr at step int(peak_fraction*total), then down to
  lr*end_factor at `total_steps` (airbench's `triangle`)."""
  peak = int(peak_fraction * total_steps)
  return optax.join_schedules([
      optax.linear_schedule(lr * start_factor, lr, max(peak, 1)),
      optax.linear_schedule(lr, lr * end_factor, max(total_steps - peak, 1)),
  ], [peak])


def _per_parameter(params: Any, rules, default, what: str) -> Any:
  """For each parameter, the value of the first (regex, value) rule matching its path."""
  compiled = []
  for rule in rules or ():
    if len(rule) < 2:
      raise ConfigError(f'optimizer.{what} entries are (regex, value, ...), got {rule!r}')
    try:
      compiled.append((re.compile(rule[0]), rule[1:]))
    except re.error as e:
      raise ConfigError(f'optimizer.{what} regex {rule[0]!r}: {e}') from None

  def value(path, _):
    name = parallel.path_to_str(path)
    return next((v for pattern, v in compiled if pattern.search(name)), default)
  return jax.tree_util.tree_map_with_path(value, params)


def _scale_by_tree(scales_fn) -> optax.GradientTransformation:
  """Multiplies each update by a per-parameter constant computed from the params' structure."""
  def update(updates, state, params=None):
    scales = scales_fn(updates)
    return jax.tree.map(lambda u, s: u * s, updates, scales), state
  return optax.GradientTransformation(lambda params: optax.EmptyState(), update)


def _add_decayed_weights_tree(coefficients_fn) -> optax.GradientTransformation:
  """updates + c * params with a per-parameter coefficient c (coupled L2 decay)."""
  def update(updates, state, params=None):
    coefficients = coefficients_fn(params)
    return jax.tree.map(lambda u, p, c: u + c * p if c else u, updates, params,
                        coefficients), state
  return optax.GradientTransformation(lambda params: optax.EmptyState(), update)


def _freeze_after(rules) -> optax.GradientTransformation:
  """Zeroes the updates of matching parameters from their rule's step on."""
  def init(params):
    return optax.ScaleByScheduleState(count=jnp.zeros([], jnp.int32))

  def update(updates, state, params=None):
    limits = _per_parameter(updates, rules, None, 'freeze_after')
    updates = jax.tree.map(
        lambda u, limit: u if limit is None else jnp.where(state.count < limit[0], u, 0),
        updates, limits, is_leaf=lambda x: x is None or isinstance(x, tuple))
    return updates, optax.ScaleByScheduleState(count=state.count + 1)
  return optax.GradientTransformation(init, update)


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
  groups = o.get('param_groups', None) or ()
  if o.name in ('sgd', 'adam'):
    # Coupled (L2) decay, added to the gradient as PyTorch's SGD and Adam do.
    if o.weight_decay and groups:
      def coefficients(params):
        decay = mask(params)
        scales = _per_parameter(params, groups, (1.0, 1.0), 'param_groups')
        return jax.tree.map(lambda d, g: o.weight_decay * g[1] if d else 0.0, decay, scales,
                            is_leaf=lambda x: isinstance(x, tuple))
      chain.append(_add_decayed_weights_tree(coefficients))
    elif o.weight_decay:
      chain.append(optax.add_decayed_weights(o.weight_decay, mask))
    if o.name == 'sgd':
      chain.append(optax.sgd(schedule, momentum=o.momentum or None, nesterov=o.nesterov))
    else:
      chain.append(optax.adam(schedule, b1=o.b1, b2=o.b2))
    if groups:  # Step sizes scale linearly, so scaling after the optimizer is exact.
      chain.append(_scale_by_tree(lambda updates: jax.tree.map(
          lambda g: g[0], _per_parameter(updates, groups, (1.0, 1.0), 'param_groups'),
          is_leaf=lambda x: isinstance(x, tuple))))
  elif groups:
    raise ConfigError(f'optimizer.param_groups is supported for sgd and adam, not {o.name!r}')
  elif o.name == 'adamw':
    chain.append(optax.adamw(schedule, b1=o.b1, b2=o.b2, weight_decay=o.weight_decay, mask=mask))
  elif o.name == 'lamb':
    chain.append(optax.lamb(schedule, b1=o.b1, b2=o.b2, weight_decay=o.weight_decay, mask=mask))
  elif o.name == 'lars':
    # SimCLR's LARS: parameters outside the decay mask (decay_norm_and_bias=False: norms and
    # biases) get neither weight decay nor the trust-ratio scaling.
    chain.append(optax.lars(schedule, weight_decay=o.weight_decay, weight_decay_mask=mask,
                            trust_ratio_mask=mask, momentum=o.momentum, nesterov=o.nesterov))
  else:
    raise ConfigError(f'unknown optimizer {o.name!r}; known: sgd, adam, adamw, lamb, lars')
  if o.get('freeze_after', None):
    chain.append(_freeze_after(o.freeze_after))
  tx = optax.chain(*chain)
  if trainable_labels is not None:
    tx = optax.multi_transform({'train': tx, 'freeze': optax.set_to_zero()}, trainable_labels)
  return tx
