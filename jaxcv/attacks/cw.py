"""Carlini & Wagner L2 attack (S&P 2017): minimise ||x' - x||^2 + c * max(z_y - max_{i!=y} z_i,
-kappa) over x' = (tanh(w) + 1) / 2 with Adam, binary-searching the constant c per example.

Returns, per example, the smallest-L2 adversarial image found, or the clean image when no run
succeeded. A minimum-norm attack: evaluate it by the norms it needs, or count successes within a
budget with `robust_within`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from jaxcv.attacks import common

_UPPER_UNSET = 1e10


def cw_l2(predict_fn: common.PredictFn, images: jax.Array, labels: jax.Array, *,
          steps: int = 100, binary_search_steps: int = 5, initial_const: float = 1e-2,
          learning_rate: float = 0.01, confidence: float = 0.0) -> jax.Array:
  images = jax.lax.stop_gradient(images.astype(jnp.float32))
  n = images.shape[0]
  w0 = jnp.arctanh(jnp.clip(images * 2 - 1, -1 + 1e-6, 1 - 1e-6))
  optimizer = optax.adam(learning_rate)
  to_image = lambda w: (jnp.tanh(w) + 1) / 2

  def objective(w, const):
    x = to_image(w)
    distance = jnp.sum(jnp.square(x - images), axis=tuple(range(1, x.ndim)))
    logits = predict_fn(x)
    hinge = jnp.maximum(-common.margin(logits, labels), -confidence)
    return jnp.sum(distance + const * hinge), (x, distance, logits)

  def search(_, carry):
    const, lower, upper, best_x, best_distance = carry

    def optimise(_, inner):
      w, opt_state, best_x, best_distance, succeeded = inner
      grad, (x, distance, logits) = jax.grad(objective, has_aux=True)(w, const)
      # The current iterate is judged before the update, as the reference does.
      success = common.margin(logits, labels) > confidence
      better = success & (distance < best_distance)
      updates, opt_state = optimizer.update(grad, opt_state)
      return (optax.apply_updates(w, updates), opt_state, common.select(better, x, best_x),
              jnp.where(better, distance, best_distance), succeeded | success)

    _, _, best_x, best_distance, succeeded = jax.lax.fori_loop(
        0, steps, optimise, (w0, optimizer.init(w0), best_x, best_distance, jnp.zeros(n, bool)))
    upper = jnp.where(succeeded, jnp.minimum(upper, const), upper)
    lower = jnp.where(succeeded, lower, jnp.maximum(lower, const))
    const = jnp.where(upper < _UPPER_UNSET, (lower + upper) / 2, const * 10)
    return const, lower, upper, best_x, best_distance

  carry = (jnp.full(n, initial_const, jnp.float32), jnp.zeros(n), jnp.full(n, _UPPER_UNSET),
           images, jnp.full(n, jnp.inf))
  best_x = jax.lax.fori_loop(0, binary_search_steps, search, carry)[3]
  return jax.lax.stop_gradient(best_x)


def robust_within(predict_fn: common.PredictFn, images: jax.Array, adversarial: jax.Array,
                  labels: jax.Array, eps: float) -> jax.Array:
  """Per example: correctly classified, and the minimum-norm attack needed more than eps (L2)."""
  correct = jnp.argmax(predict_fn(images), -1) == labels
  fooled = common.fooled(predict_fn(adversarial), labels)
  norms = common.per_example_norm(adversarial - images).reshape(-1)
  return correct & ~(fooled & (norms <= eps))
