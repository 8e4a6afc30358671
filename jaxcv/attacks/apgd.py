"""Auto-PGD (Croce & Hein, ICML 2020, "Reliable evaluation of adversarial robustness with an
ensemble of diverse parameter-free attacks", Algorithm 1) with the CE, DLR and targeted-DLR losses.

Exact to the reference implementation (`fra31/auto-attack`, `autoattack/autopgd_base.py`, L-inf
and L2): the start x + eps * t / ||t|| (L-inf: t uniform in [-1, 1]^d, so the start lies on the
ball's surface; L2: t Gaussian, so it lies on the sphere), clipped to [0, 1]; initial step 2*eps;
momentum 0.75 from the second iteration on; checkpoints after 22% of the budget, then windows
shrinking by 3% down to 6%. At a checkpoint the step halves and the iterate restarts from the best
point when at most 75% of the window's steps increased the loss (the first window compares the
first iterate's loss with 0, as the reference's zero-initialised loss history does), or when the
step was not halved at the previous checkpoint (`reduced_last` starts at ones, so never at the
first) and the best loss has not improved since.

`apgd` returns, per example, the last iterate that fooled the model in the first restart that
fooled it, and the clean image where no restart did (or where the clean image is already
misclassified), as the reference's `perturb`; `best_loss=True` returns the highest-loss point over
the restarts instead (the reference's `best_loss` mode). Restarts redraw only the random start.
Every per-example quantity (step size included) is a batched array, so a run is one `lax.scan`.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Union

import jax
import jax.numpy as jnp
import numpy as np

from jaxcv.attacks import common
from jaxcv.errors import ConfigError

MOMENTUM = 0.75
OSCILLATION_THRESHOLD = 0.75  # rho in the paper.
_TINY = 1e-12  # The reference's guard in every normalisation.


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


def _unit(x: jax.Array, norm: str) -> jax.Array:
  """x / ||x|| per example (L-inf or L2), with the reference's 1e-12 guard."""
  flat = x.reshape(x.shape[0], -1)
  size = jnp.max(jnp.abs(flat), 1) if norm == 'linf' else jnp.sqrt(jnp.sum(flat * flat, 1))
  return x / (size.reshape((-1,) + (1,) * (x.ndim - 1)) + _TINY)


def apgd_start(rng: jax.Array, images: jax.Array, eps: float, norm: str) -> jax.Array:
  """The reference's random start: x + eps * t / ||t|| (L-inf: t ~ U[-1, 1]^d; L2: t ~ N(0, I)),
  clipped to [0, 1]."""
  if norm == 'linf':
    t = jax.random.uniform(rng, images.shape, jnp.float32, -1.0, 1.0)
  else:
    t = jax.random.normal(rng, images.shape, jnp.float32)
  return jnp.clip(images + eps * _unit(t, norm), 0.0, 1.0)


def _project(x_adv: jax.Array, images: jax.Array, eps: float, norm: str) -> jax.Array:
  """The reference's projections: L-inf clamps to [x - eps, x + eps], L2 rescales the
  perturbation to length min(eps, ||delta||); both then clip to [0, 1]."""
  if norm == 'linf':
    return jnp.clip(jnp.clip(x_adv, images - eps, images + eps), 0.0, 1.0)
  delta = x_adv - images
  length = common.per_example_norm(delta)
  return jnp.clip(images + _unit(delta, norm) * jnp.minimum(eps, length), 0.0, 1.0)


class ApgdRun(NamedTuple):
  """One APGD run (the reference's `attack_single_run`) and its per-iteration trace."""
  x_best: jax.Array       # Highest-loss iterate.
  loss_best: jax.Array
  fooled: jax.Array       # Some iterate (or the start) was misclassified.
  x_fooling: jax.Array    # The last misclassified iterate (the start where none was).
  step_sizes: jax.Array   # [steps, N]: the step size used at each iteration.
  losses: jax.Array       # [steps, N]: the loss of each iterate.


def apgd_run(predict_fn: common.PredictFn, loss_fn: common.LossFn, images: jax.Array,
             labels: Any, true_labels: jax.Array, x_start: jax.Array, *, eps: float, steps: int,
             norm: str = 'linf') -> ApgdRun:
  """One APGD run from `x_start` (e.g. `apgd_start`); `labels` are what `loss_fn` takes."""
  is_checkpoint, window = (jnp.asarray(a) for a in checkpoint_schedule(steps))
  loss0, grad0, logits0 = common.loss_and_grad(predict_fn, loss_fn, x_start, labels)
  n = images.shape[0]
  state = dict(
      x=x_start, x_old=x_start, grad=grad0,
      # The reference's loss history starts at zeros: the first window's first comparison is
      # against 0, not against the start's loss.
      loss=jnp.zeros_like(loss0),
      x_best=x_start, grad_best=grad0, loss_best=loss0,
      x_fooling=x_start, fooled=common.fooled(logits0, true_labels),
      step=jnp.full((n,) + (1,) * (images.ndim - 1), 2.0 * eps, jnp.float32),
      increases=jnp.zeros(n, jnp.int32), reduced_last=jnp.ones(n, bool), loss_best_last=loss0)

  def body(s, i):
    momentum = jnp.where(i > 0, MOMENTUM, 1.0)
    z = _project(s['x'] + s['step'] * _ascent(s['grad'], norm), images, eps, norm)
    x = _project(s['x'] + (z - s['x']) * momentum + (s['x'] - s['x_old']) * (1 - momentum),
                 images, eps, norm)
    loss, grad, logits = common.loss_and_grad(predict_fn, loss_fn, x, labels)
    is_fooled = common.fooled(logits, true_labels)
    improved = loss > s['loss_best']
    previous = loss if steps == 1 else s['loss']  # steps == 1: the history's last row is this one.
    trace = (s['step'].reshape(n), loss)
    s = dict(s, x_old=s['x'], x=x, grad=grad, loss=loss,
             x_fooling=common.select(is_fooled, x, s['x_fooling']), fooled=s['fooled'] | is_fooled,
             x_best=common.select(improved, x, s['x_best']),
             grad_best=common.select(improved, grad, s['grad_best']),
             loss_best=jnp.where(improved, loss, s['loss_best']),
             increases=s['increases'] + (loss > previous).astype(jnp.int32))
    # Checkpoint: halve the step and restart from the best point where progress stalled.
    oscillating = s['increases'] <= window[i] * OSCILLATION_THRESHOLD
    stalled = ~s['reduced_last'] & (s['loss_best_last'] >= s['loss_best'])
    reduce = is_checkpoint[i] & (oscillating | stalled)
    s = dict(
        s, step=jnp.where(reduce.reshape(s['step'].shape), s['step'] / 2, s['step']),
        x=common.select(reduce, s['x_best'], s['x']),
        grad=common.select(reduce, s['grad_best'], s['grad']),
        increases=jnp.where(is_checkpoint[i], 0, s['increases']),
        reduced_last=jnp.where(is_checkpoint[i], reduce, s['reduced_last']),
        loss_best_last=jnp.where(is_checkpoint[i], s['loss_best'], s['loss_best_last']))
    return s, trace

  s, (step_sizes, losses) = jax.lax.scan(body, state, jnp.arange(steps))
  return ApgdRun(s['x_best'], s['loss_best'], s['fooled'], s['x_fooling'], step_sizes, losses)


def _ascent(grad: jax.Array, norm: str) -> jax.Array:
  return jnp.sign(grad) if norm == 'linf' else _unit(grad, norm)


def _first_fooling(run, count: int, images: jax.Array, still_robust: jax.Array):
  """The reference's restart rule: run(i) -> ApgdRun for i < count, each restart counting only
  on the examples no earlier restart fooled; returns (adversarial images, fooled). Examples that
  are not `still_robust` to begin with keep their clean image and are not counted."""
  def one(i, carry):
    x_adv, fooled = carry
    result = run(i)
    new = still_robust & ~fooled & result.fooled
    return common.select(new, result.x_fooling, x_adv), fooled | new

  def maybe(i, carry):  # Skip restarts once every example is fooled (the reference's early out).
    return jax.lax.cond(jnp.all(carry[1] | ~still_robust), lambda c: c, lambda c: one(i, c), carry)

  return jax.lax.fori_loop(0, count, maybe, (images, jnp.zeros_like(still_robust)))


def _best_loss(run, count: int, images: jax.Array):
  """The reference's `best_loss` mode: per example the highest-loss point over the restarts."""
  def one(i, carry):
    x_best, loss_best = carry
    result = run(i)
    take = result.loss_best > loss_best
    return common.select(take, result.x_best, x_best), jnp.where(take, result.loss_best, loss_best)

  return jax.lax.fori_loop(0, count, one,
                           (images, jnp.full(images.shape[:1], -jnp.inf, jnp.float32)))[0]


def _check(steps, restarts, norm):
  common.check_norm(norm)
  if steps < 1 or restarts < 1:
    raise ConfigError(f'apgd needs steps >= 1 and restarts >= 1, got {steps}, {restarts}')


def apgd(predict_fn: common.PredictFn, images: jax.Array, labels: jax.Array, rng: jax.Array, *,
         eps: float, steps: int = 100, norm: str = 'linf',
         loss: Union[str, common.LossFn] = 'ce', restarts: int = 1,
         target_labels: Any = None, best_loss: bool = False) -> jax.Array:
  """APGD with loss 'ce', 'dlr' or 'dlr_targeted' (then `target_labels` is required); returns
  per example the adversarial image of the first restart that fooled the model, else the clean
  image (`best_loss=True`: the highest-loss point over the restarts)."""
  _check(steps, restarts, norm)
  if loss == 'dlr_targeted' and target_labels is None:
    raise ConfigError("apgd with loss='dlr_targeted' needs target_labels")
  loss_fn = common.get_loss(loss)
  loss_labels = (labels, target_labels) if loss == 'dlr_targeted' else labels
  images = jax.lax.stop_gradient(images.astype(jnp.float32))
  run = lambda i: apgd_run(predict_fn, loss_fn, images, loss_labels, labels,
                           apgd_start(jax.random.fold_in(rng, i), images, eps, norm),
                           eps=eps, steps=steps, norm=norm)
  if best_loss:
    return jax.lax.stop_gradient(_best_loss(run, restarts, images))
  correct = jnp.argmax(predict_fn(images), -1) == labels
  return jax.lax.stop_gradient(_first_fooling(run, restarts, images, correct)[0])


def target_ranking(clean_logits: jax.Array, num_targets: int) -> jax.Array:
  """[num_targets, N]: the reference's target order, the 2nd, 3rd, ... highest clean logit."""
  ranking = jnp.argsort(clean_logits, -1)  # Ascending: the last is the top class.
  num_classes = clean_logits.shape[-1]
  return jnp.stack([ranking[:, num_classes - 2 - t] for t in range(num_targets)])


def apgd_targeted(predict_fn: common.PredictFn, images: jax.Array, labels: jax.Array,
                  rng: jax.Array, *, eps: float, steps: int = 100, norm: str = 'linf',
                  num_targets: int = 9, restarts: int = 1) -> jax.Array:
  """APGD-T: targeted-DLR APGD against each of the `num_targets` highest-scoring wrong classes of
  the clean input in turn (AutoAttack's standard: 9), each on the examples no earlier target
  fooled; returns the fooling image, else the clean one."""
  _check(steps, restarts, norm)
  images = jax.lax.stop_gradient(images.astype(jnp.float32))
  clean_logits = predict_fn(images)
  num_classes = clean_logits.shape[-1]
  if num_classes < 4:
    raise ConfigError(f'APGD-T (targeted DLR) needs >= 4 classes, the model has {num_classes}')
  num_targets = min(num_targets, num_classes - 1)
  targets = target_ranking(clean_logits, num_targets)
  correct = jnp.argmax(clean_logits, -1) == labels

  def run(i):  # Run i: target i // restarts, restart i % restarts (the reference's loop order).
    target, restart = i // restarts, i % restarts
    start = apgd_start(jax.random.fold_in(jax.random.fold_in(rng, target), restart), images, eps,
                       norm)
    return apgd_run(predict_fn, common.targeted_dlr, images, (labels, targets[target]), labels,
                    start, eps=eps, steps=steps, norm=norm)

  return jax.lax.stop_gradient(
      _first_fooling(run, num_targets * restarts, images, correct)[0])
