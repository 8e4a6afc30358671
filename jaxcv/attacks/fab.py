"""FAB-T, the targeted Fast Adaptive Boundary attack under L-inf (Croce & Hein, ICML 2020,
"Minimally distorted adversarial examples with a fast adaptive boundary attack"), exact to the
reference implementation (`fra31/auto-attack`, `autoattack/fab_base.py`, `fab_pt.py`,
`fab_projections.py`) as AutoAttack's standard version runs it: one restart from the clean image,
targets the 2nd, 3rd, ... highest clean logits in turn, each on the examples no earlier target
fooled within eps.

Each iteration linearises the target-vs-true logit difference at the iterate, projects both the
iterate and the clean image onto that hyperplane (minimal L-inf step inside [0, 1]), and takes a
convex combination biased towards the clean image (alpha <= alpha_max), overshooting by eta; when
the iterate is adversarial, it is recorded if it is the closest so far and pulled back towards
the clean image by beta. Hand-written: no JAX library has FAB or its box-constrained hyperplane
projection.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from jaxcv.attacks import common
from jaxcv.attacks.apgd import target_ranking
from jaxcv.errors import ConfigError

ALPHA_MAX, ETA, BETA = 0.1, 1.05, 0.9  # The reference's defaults (AutoAttack keeps them).
_NOT_FOUND = 1e10


def project_linf_hyperplane(t: jax.Array, w: jax.Array, b: jax.Array) -> jax.Array:
  """Per row: the minimal L-inf step d with w . (t + d) = b and t + d in [0, 1] (where the box
  allows it; else the box corner closest to the hyperplane). t, w: [B, D]; b: [B]. A batched
  transcription of the reference's `projection_linf` (sort, prefix sums, bisection)."""
  dim = w.shape[1]
  sign = jnp.where(jnp.sum(w * t, 1) - b >= 0, 1.0, -1.0)
  w, b = w * sign[:, None], b * sign
  a = (w < 0).astype(t.dtype)
  nonzero = (w != 0).astype(t.dtype)
  d = (a - t) * nonzero
  p = a - t * (2 * a - 1)
  order = jnp.argsort(p, 1)
  b = b - jnp.sum(w * t, 1)
  b0 = jnp.sum(w * d, 1)
  descending = order[:, ::-1]
  ws = jnp.take_along_axis(w, descending, 1)
  s = jnp.cumsum(jnp.abs(ws), 1)
  sb = jnp.cumsum(-ws * jnp.take_along_axis(d, descending, 1), 1) + b0[:, None]
  p_first = jnp.take_along_axis(p, order[:, :1], 1)[:, 0]
  beyond_all = b - (sb[:, -1] - s[:, -1] * p_first) > 0
  bisect = (b - b0 > 0) & ~beyond_all

  def halve(_, bounds):
    low, high = bounds
    mid = jnp.floor((low + high) / 2)
    index = mid.astype(jnp.int32)[:, None]
    current = jnp.take_along_axis(order, dim - 1 - index, 1)
    b2 = (jnp.take_along_axis(sb, index, 1) - jnp.take_along_axis(s, index, 1)
          * jnp.take_along_axis(p, current, 1))[:, 0]
    above = b - b2 > 0
    return jnp.where(above, mid, low), jnp.where(above, high, mid)

  low = jnp.zeros(w.shape[0], t.dtype)
  low, _ = jax.lax.fori_loop(0, math.ceil(math.log2(dim)), halve,
                             (low, jnp.full_like(low, dim - 1)))
  low = low.astype(jnp.int32)[:, None]
  lambda_all = jnp.maximum((b - sb[:, -1]) / -s[:, -1], 0)[:, None]
  d = jnp.where(beyond_all[:, None], (2 * a - 1) * lambda_all, d)
  lambda_opt = jnp.maximum((b[:, None] - jnp.take_along_axis(sb, low, 1))
                           / -jnp.take_along_axis(s, low, 1), 0)
  clipped = jnp.minimum(lambda_opt, d) * a + jnp.maximum(-lambda_opt, d) * (1 - a)
  d = jnp.where(bisect[:, None], clipped, d)
  return d * nonzero


def _linf(x: jax.Array) -> jax.Array:
  return jnp.max(jnp.abs(x.reshape(x.shape[0], -1)), 1)


def fab_targeted_run(predict_fn: common.PredictFn, images: jax.Array, labels: jax.Array,
                     targets: jax.Array, *, steps: int) -> tuple[jax.Array, jax.Array]:
  """One FAB-T run (the reference's `attack_single_run`, L-inf, no random start): returns the
  closest adversarial point found and its L-inf distance (1e10 where none was found)."""
  n = images.shape[0]
  flat_images = images.reshape(n, -1)

  def difference(x):  # z_target - z_true: positive once the target class wins.
    logits = predict_fn(x)
    pick = lambda c: jnp.take_along_axis(logits, c[:, None], -1)[:, 0]
    return jnp.sum(pick(targets) - pick(labels)), pick(targets) - pick(labels)

  def body(_, carry):
    x1, adv, best = carry
    (_, df), dg = jax.value_and_grad(difference, has_aux=True)(x1)
    w = dg.reshape(n, -1)
    b = -df + jnp.sum(w * x1.reshape(n, -1), 1)
    steps_both = project_linf_hyperplane(jnp.concatenate([x1.reshape(n, -1), flat_images]),
                                         jnp.concatenate([w, w]), jnp.concatenate([b, b]))
    a0 = jnp.maximum(jnp.max(jnp.abs(steps_both), 1), 1e-8)
    a1, a2 = a0[:n], a0[n:]
    alpha = jnp.clip(a1 / (a1 + a2), 0.0, ALPHA_MAX).reshape((n,) + (1,) * (images.ndim - 1))
    d1, d2 = steps_both[:n].reshape(images.shape), steps_both[n:].reshape(images.shape)
    x1 = jnp.clip((x1 + ETA * d1) * (1 - alpha) + (images + ETA * d2) * alpha, 0.0, 1.0)
    is_adv = jnp.argmax(predict_fn(x1), -1) != labels
    distance = _linf(x1 - images)
    closer = is_adv & (distance < best)
    adv = common.select(closer, x1, adv)
    best = jnp.where(closer, distance, best)
    x1 = common.select(is_adv, images + (x1 - images) * BETA, x1)
    return x1, adv, best

  init = (images, images, jnp.full(n, _NOT_FOUND, jnp.float32))
  _, adv, best = jax.lax.fori_loop(0, steps, body, init)
  return adv, best


def fab_targeted(predict_fn: common.PredictFn, images: jax.Array, labels: jax.Array,
                 rng: jax.Array = None, *, eps: float, steps: int = 100, norm: str = 'linf',
                 num_targets: int = 9) -> jax.Array:
  """FAB-T under L-inf: per example the first target's closest adversarial point within eps,
  else the clean image (the reference's `perturb` with targeted=True, one restart; `rng` is
  unused, as the reference draws nothing without random restarts)."""
  del rng
  if norm != 'linf':
    raise ConfigError(f"fab_t is implemented for norm 'linf' only, got {norm!r}")
  if steps < 1 or num_targets < 1:
    raise ConfigError(f'fab_t needs steps >= 1 and num_targets >= 1, got {steps}, {num_targets}')
  images = jax.lax.stop_gradient(images.astype(jnp.float32))
  clean_logits = predict_fn(images)
  num_targets = min(num_targets, clean_logits.shape[-1] - 1)
  targets = target_ranking(clean_logits, num_targets)
  correct = jnp.argmax(clean_logits, -1) == labels

  def one(t, carry):
    x_adv, fooled = carry
    adv, distance = fab_targeted_run(predict_fn, images, labels, targets[t], steps=steps)
    new = correct & ~fooled & (distance <= eps) & (jnp.argmax(predict_fn(adv), -1) != labels)
    return common.select(new, adv, x_adv), fooled | new

  def maybe(t, carry):
    return jax.lax.cond(jnp.all(carry[1] | ~correct), lambda c: c, lambda c: one(t, c), carry)

  x_adv, _ = jax.lax.fori_loop(0, num_targets, maybe, (images, jnp.zeros_like(correct)))
  return jax.lax.stop_gradient(x_adv)
