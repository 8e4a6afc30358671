"""Pieces every attack shares: threat-model projections, losses, and predict functions.

Attacks work on any `predict_fn(images) -> logits`, images float in [0, 1] (NHWC), and are pure
JAX (loops are `lax.fori_loop`), so they batch, jit and nest inside a train step.
"""

from __future__ import annotations

from typing import Any, Callable, Union

import jax
import jax.numpy as jnp

from jaxcv.errors import ConfigError
from jaxcv.losses import cross_entropy

PredictFn = Callable[[jax.Array], jax.Array]
LossFn = Callable[[jax.Array, Any], jax.Array]  # (logits, labels) -> per-example loss, maximised.
StepSize = Union[float, Callable[[jax.Array], jax.Array]]

NORMS = ('linf', 'l2')
_TINY = 1e-12


def check_norm(norm: str) -> None:
  if norm not in NORMS:
    raise ConfigError(f'attack norm must be one of {NORMS}, got {norm!r}')


def per_example_norm(x: jax.Array) -> jax.Array:
  """L2 norm of each example, shaped [N, 1, 1, 1] to broadcast against images."""
  return jnp.sqrt(jnp.sum(jnp.square(x), axis=tuple(range(1, x.ndim)), keepdims=True))


def project(x_adv: jax.Array, x: jax.Array, eps: float, norm: str) -> jax.Array:
  """Nearest point to `x_adv` in the eps-ball around `x` (for L2: radial scaling), in [0, 1]."""
  delta = x_adv - x
  if norm == 'linf':
    delta = jnp.clip(delta, -eps, eps)
  else:
    delta = delta * jnp.minimum(1.0, eps / (per_example_norm(delta) + _TINY))
  return jnp.clip(x + delta, 0.0, 1.0)


def ascent_direction(grad: jax.Array, norm: str) -> jax.Array:
  """Steepest-ascent direction of unit norm: sign for L-inf, normalised gradient for L2."""
  if norm == 'linf':
    return jnp.sign(grad)
  return grad / (per_example_norm(grad) + _TINY)


def random_start(rng: jax.Array, x: jax.Array, eps: float, norm: str) -> jax.Array:
  """A uniform point of the eps-ball around `x` (clipped to [0, 1])."""
  if norm == 'linf':
    delta = jax.random.uniform(rng, x.shape, jnp.float32, -eps, eps)
  else:  # Uniform in the L2 ball: Gaussian direction, radius eps * U^(1/d).
    direction_rng, radius_rng = jax.random.split(rng)
    direction = jax.random.normal(direction_rng, x.shape, jnp.float32)
    direction = direction / (per_example_norm(direction) + _TINY)
    dim = x[0].size
    radius = eps * jax.random.uniform(radius_rng, (x.shape[0],) + (1,) * (x.ndim - 1)) ** (1 / dim)
    delta = direction * radius
  return jnp.clip(x + delta, 0.0, 1.0)


# ------------------------------------------------------------------ losses (all maximised)

def margin(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """max_{i != y} z_i - z_y: positive exactly when the example is misclassified (CW loss)."""
  logits = logits.astype(jnp.float32)
  true = jnp.take_along_axis(logits, labels[:, None], -1)[:, 0]
  other = jnp.max(jnp.where(jax.nn.one_hot(labels, logits.shape[-1], dtype=bool), -jnp.inf,
                            logits), -1)
  return other - true


def dlr(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """Difference of Logits Ratio (Croce & Hein 2020, eq. 5), negated so that it is maximised."""
  logits = logits.astype(jnp.float32)
  top = jnp.sort(logits, -1)[:, ::-1]
  return margin(logits, labels) / (top[:, 0] - top[:, 2] + _TINY)


def targeted_dlr(logits: jax.Array, labels: tuple[jax.Array, jax.Array]) -> jax.Array:
  """Targeted DLR (Croce & Hein 2020, eq. 6); `labels` = (true labels, target labels)."""
  true_labels, targets = labels
  logits = logits.astype(jnp.float32)
  top = jnp.sort(logits, -1)[:, ::-1]
  z_true = jnp.take_along_axis(logits, true_labels[:, None], -1)[:, 0]
  z_target = jnp.take_along_axis(logits, targets[:, None], -1)[:, 0]
  return -(z_true - z_target) / (top[:, 0] - 0.5 * (top[:, 2] + top[:, 3]) + _TINY)


LOSSES: dict[str, LossFn] = {'ce': cross_entropy, 'cw': margin, 'dlr': dlr,
                             'dlr_targeted': targeted_dlr}


def get_loss(loss: Union[str, LossFn]) -> LossFn:
  if callable(loss):
    return loss
  if loss not in LOSSES:
    raise ConfigError(f'unknown attack loss {loss!r}; known: {sorted(LOSSES)} or a callable')
  return LOSSES[loss]


def loss_and_grad(predict_fn: PredictFn, loss_fn: LossFn, x: jax.Array, labels: Any):
  """Per-example loss, its input gradient and the logits, from one forward and one backward."""
  def total(x):
    logits = predict_fn(x)
    per_example = loss_fn(logits, labels)
    return jnp.sum(per_example), (per_example, logits)
  (_, (per_example, logits)), grad = jax.value_and_grad(total, has_aux=True)(x)
  return per_example, grad.astype(jnp.float32), logits


def step_size_at(step_size: StepSize, i: jax.Array) -> jax.Array:
  return step_size(i) if callable(step_size) else jnp.asarray(step_size, jnp.float32)


def fooled(logits: jax.Array, labels: jax.Array) -> jax.Array:
  return jnp.argmax(logits, -1) != labels


def select(mask: jax.Array, a: jax.Array, b: jax.Array) -> jax.Array:
  """Per-example choice: a where mask[i] else b."""
  return jnp.where(mask.reshape((-1,) + (1,) * (a.ndim - 1)), a, b)


# ------------------------------------------------------------------ predict functions of models

def model_predict_fn(model, variables: Any, *, bn_train_mode: bool = False) -> PredictFn:
  """`images -> logits` of a linen classifier with fixed variables.

  BatchNorm runs in eval mode (running statistics) by default. `bn_train_mode=True` uses the
  statistics of the attacked batch instead; the running statistics are not updated either way.
  """
  def predict(images):
    if not bn_train_mode:
      return model.apply(variables, images, train=False)
    mutable = [k for k in variables if k != 'params']
    logits, _ = model.apply(variables, images, train=True, mutable=mutable)
    return logits
  return predict


# ------------------------------------------------------------------ restarts

def keep_better(best, new):
  """Per example: the first result that fools the model, else the one with the higher loss."""
  x, is_fooled, loss = best
  new_x, new_fooled, new_loss = new
  take = (new_fooled & ~is_fooled) | (~is_fooled & ~new_fooled & (new_loss > loss))
  return select(take, new_x, x), is_fooled | new_fooled, jnp.where(take, new_loss, loss)


def best_of(run, count):
  """Runs `run(i)` -> (x, fooled, loss) for i < count and keeps the better result per example."""
  first = run(0)
  if count == 1:
    return first
  return jax.lax.fori_loop(1, count, lambda i, best: keep_better(best, run(i)), first)
