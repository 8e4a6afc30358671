"""Auto-PGD (Croce & Hein, ICML 2020, "Reliable evaluation of adversarial robustness with an
ensemble of diverse parameter-free attacks", Algorithm 1) with the CE, DLR and targeted-DLR losses.

Follows the reference implementation (`fra31/auto-attack`, `apgd.py`): initial step 2*eps,
momentum 0.75 from the second iteration on, checkpoints after 22%, then windows shrinking by 3%
of the budget down to 6%; at a checkpoint the step halves and the iterate restarts from the best
point when fewer than 75% of the steps since the last checkpoint increased the loss, or when the
step was not reduced last time and the best loss has not improved since. Every per-example
quantity (step size included) is a batched array, so the whole attack is one `fori_loop`.
"""

from __future__ import annotations

from typing import Any, Union

import jax
import jax.numpy as jnp
import numpy as np

from jaxcv.attacks import common
from jaxcv.errors import ConfigError

MOMENTUM = 0.75
OSCILLATION_THRESHOLD = 0.75  # rho in the paper.


def checkpoint_schedule(steps: int) -> tuple[np.ndarray, np.ndarray]:
  """(is_checkpoint[i], window[i]): the iterations where the step size may halve, and how many
  iterations since the previous checkpoint they judge (the reference's integer schedule)."""
  is_checkpoint = np.zeros(max(steps, 1), bool)
  window = np.ones(max(steps, 1), np.int32)
  k = max(int(0.22 * steps), 1)
  k_min, k_decrease = max(int(0.06 * steps), 1), max(int(0.03 * steps), 1)
  counter = 0
  for i in range(steps):
    counter += 1
    if counter == k:
      is_checkpoint[i], window[i] = True, k
      k, counter = max(k - k_decrease, k_min), 0
  return is_checkpoint, window


def _apgd_once(predict_fn, loss_fn, images, labels, true_labels, rng, eps, steps, norm):
  is_checkpoint, window = (jnp.asarray(a) for a in checkpoint_schedule(steps))
  x0 = common.random_start(rng, images, eps, norm)
  loss0, grad0, logits0 = common.loss_and_grad(predict_fn, loss_fn, x0, labels)
  n = images.shape[0]
  state = dict(
      x=x0, x_old=x0, grad=grad0, loss=loss0,
      x_best=x0, grad_best=grad0, loss_best=loss0,
      x_fooling=x0, fooled=common.fooled(logits0, true_labels),
      step=jnp.full((n,) + (1,) * (images.ndim - 1), 2.0 * eps, jnp.float32),
      increases=jnp.zeros(n, jnp.int32), reduced_last=jnp.zeros(n, bool), loss_best_last=loss0)

  def body(i, s):
    momentum = jnp.where(i > 0, MOMENTUM, 1.0)
    z = common.project(s['x'] + s['step'] * common.ascent_direction(s['grad'], norm),
                       images, eps, norm)
    x = common.project(s['x'] + momentum * (z - s['x']) + (1 - momentum) * (s['x'] - s['x_old']),
                       images, eps, norm)
    loss, grad, logits = common.loss_and_grad(predict_fn, loss_fn, x, labels)
    is_fooled = common.fooled(logits, true_labels)
    improved = loss > s['loss_best']
    s = dict(s, x_old=s['x'], x=x, grad=grad, loss=loss,
             x_fooling=common.select(is_fooled, x, s['x_fooling']), fooled=s['fooled'] | is_fooled,
             x_best=common.select(improved, x, s['x_best']),
             grad_best=common.select(improved, grad, s['grad_best']),
             loss_best=jnp.where(improved, loss, s['loss_best']),
             increases=s['increases'] + (loss > s['loss']).astype(jnp.int32))
    # Checkpoint: halve the step and restart from the best point where progress stalled.
    oscillating = s['increases'] <= window[i] * OSCILLATION_THRESHOLD
    stalled = ~s['reduced_last'] & (s['loss_best_last'] >= s['loss_best'])
    reduce = is_checkpoint[i] & (oscillating | stalled)
    return dict(
        s, step=jnp.where(reduce.reshape(s['step'].shape), s['step'] / 2, s['step']),
        x=common.select(reduce, s['x_best'], s['x']),
        grad=common.select(reduce, s['grad_best'], s['grad']),
        increases=jnp.where(is_checkpoint[i], 0, s['increases']),
        reduced_last=jnp.where(is_checkpoint[i], reduce, s['reduced_last']),
        loss_best_last=jnp.where(is_checkpoint[i], s['loss_best'], s['loss_best_last']))

  s = jax.lax.fori_loop(0, steps, body, state)
  return common.select(s['fooled'], s['x_fooling'], s['x_best']), s['fooled'], s['loss_best']


def apgd(predict_fn: common.PredictFn, images: jax.Array, labels: jax.Array, rng: jax.Array, *,
         eps: float, steps: int = 100, norm: str = 'linf',
         loss: Union[str, common.LossFn] = 'ce', restarts: int = 1,
         target_labels: Any = None) -> jax.Array:
  """APGD with loss 'ce', 'dlr' or 'dlr_targeted' (then `target_labels` is required); returns
  adversarial images (per example a fooling iterate when one was found, else the best-loss one)."""
  common.check_norm(norm)
  if steps < 1 or restarts < 1:
    raise ConfigError(f'apgd needs steps >= 1 and restarts >= 1, got {steps}, {restarts}')
  if loss == 'dlr_targeted' and target_labels is None:
    raise ConfigError("apgd with loss='dlr_targeted' needs target_labels")
  loss_fn = common.get_loss(loss)
  loss_labels = (labels, target_labels) if loss == 'dlr_targeted' else labels
  images = jax.lax.stop_gradient(images.astype(jnp.float32))
  run = lambda i: _apgd_once(predict_fn, loss_fn, images, loss_labels, labels,
                             jax.random.fold_in(rng, i), eps, steps, norm)
  return jax.lax.stop_gradient(common.best_of(run, restarts)[0])


def apgd_targeted(predict_fn: common.PredictFn, images: jax.Array, labels: jax.Array,
                  rng: jax.Array, *, eps: float, steps: int = 100, norm: str = 'linf',
                  num_targets: int = 9, restarts: int = 1) -> jax.Array:
  """APGD-T: targeted-DLR APGD against each of the `num_targets` highest-scoring wrong classes of
  the clean input in turn (AutoAttack's standard: 9); an example counts as broken if any target
  run fools it."""
  common.check_norm(norm)
  images = jax.lax.stop_gradient(images.astype(jnp.float32))
  clean_logits = predict_fn(images)
  num_classes = clean_logits.shape[-1]
  if num_classes < 4:
    raise ConfigError(f'APGD-T (targeted DLR) needs >= 4 classes, the model has {num_classes}')
  num_targets = min(num_targets, num_classes - 1)
  ranking = jnp.argsort(clean_logits, -1)  # Ascending: the last is the top class.

  def run_target(t):
    targets = jnp.take(ranking, num_classes - 2 - t, axis=-1)  # 2nd, 3rd, ... highest.
    target_rng = jax.random.fold_in(rng, t)
    run = lambda i: _apgd_once(predict_fn, common.targeted_dlr, images, (labels, targets),
                               labels, jax.random.fold_in(target_rng, i), eps, steps, norm)
    return common.best_of(run, restarts)

  return jax.lax.stop_gradient(common.best_of(run_target, num_targets)[0])
