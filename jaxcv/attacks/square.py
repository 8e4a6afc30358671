"""Square Attack under L-inf (Andriushchenko et al., ECCV 2020, "Square Attack: a query-efficient
black-box adversarial attack via random search"), exact to AutoAttack's version
(`fra31/auto-attack`, `autoattack/square.py`, margin loss, no schedule rescaling).

Start: vertical stripes x + eps * (+-1) per example, column and channel. Each query adds a square
of side s (from the schedule of p, the fraction of pixels it covers) filled with +-2 eps per
channel to the best point so far, projects onto the eps-ball and [0, 1], and keeps it where the
margin loss fell or the example became misclassified; examples stop once misclassified. As in the
reference, one square position and one sign per channel are drawn per query and shared by the
whole batch. Gradient-free, so it also checks that gradient masking does not inflate robustness.
Hand-written: random search has no JAX library.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from jaxcv.attacks import common
from jaxcv.errors import ConfigError

P_INIT = 0.8  # AutoAttack's setting.
# The reference's schedule: p = p_init / 2**k for iteration counts past these thresholds.
_P_THRESHOLDS = (10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000)


def p_schedule(iteration: int, p_init: float = P_INIT) -> float:
  """The reference's `p_selection` (AutoAttack: no rescaling to the query budget)."""
  return p_init / 2 ** sum(iteration > t for t in _P_THRESHOLDS)


def square_sides(queries: int, height: int, width: int, p_init: float = P_INIT) -> np.ndarray:
  """Side of the square at each query: max(round(sqrt(p * H * W)), 1), at most min(H, W)."""
  sides = [max(int(round(math.sqrt(p_schedule(i, p_init) * height * width))), 1)
           for i in range(queries)]
  return np.minimum(np.asarray(sides, np.int32), min(height, width))


def _margin(predict_fn, x, labels):
  """z_y - max_{i != y} z_i (the reference's margin loss: positive while correctly classified)."""
  return -common.margin(predict_fn(x), labels)


def square_linf(predict_fn: common.PredictFn, images: jax.Array, labels: jax.Array,
                rng: jax.Array, *, eps: float, n_queries: int = 5000, norm: str = 'linf',
                p_init: float = P_INIT) -> jax.Array:
  """Square Attack (L-inf, NHWC images); returns the fooling image where one was found, else the
  clean image (the reference's `perturb`, one restart)."""
  if norm != 'linf':
    raise ConfigError(f"square is implemented for norm 'linf' only, got {norm!r}")
  if n_queries < 0:
    raise ConfigError(f'square needs n_queries >= 0, got {n_queries}')
  images = jax.lax.stop_gradient(images.astype(jnp.float32))
  n, height, width, channels = images.shape
  correct = _margin(predict_fn, images, labels) > 0
  stripes_rng, loop_rng = jax.random.split(rng)
  stripes = jnp.sign(jax.random.uniform(stripes_rng, (n, 1, width, channels), minval=-1.0))
  x_best = jnp.clip(images + eps * stripes, 0.0, 1.0)
  margin_min = _margin(predict_fn, x_best, labels)
  loss_min = margin_min
  sides = jnp.asarray(square_sides(max(n_queries, 1), height, width, p_init))
  rows, cols = jnp.arange(height)[:, None, None], jnp.arange(width)[None, :, None]

  def body(carry):
    i, x_best, margin_min, loss_min = carry
    active = margin_min > 0  # The reference attacks only the examples not yet misclassified.
    side = sides[i]
    key_h, key_w, key_sign = jax.random.split(jax.random.fold_in(loop_rng, i), 3)
    # random_int(0, H - s): floor((H - s) * U[0, 1)).
    top = jnp.floor((height - side) * jax.random.uniform(key_h)).astype(jnp.int32)
    left = jnp.floor((width - side) * jax.random.uniform(key_w)).astype(jnp.int32)
    sign = jnp.sign(jax.random.uniform(key_sign, (channels,), minval=-1.0))
    inside = (rows >= top) & (rows < top + side) & (cols >= left) & (cols < left + side)
    delta = jnp.where(inside, 2.0 * eps * sign, 0.0)  # [H, W, C], shared by the batch.
    x_new = jnp.clip(jnp.clip(x_best + delta, images - eps, images + eps), 0.0, 1.0)
    margin = _margin(predict_fn, x_new, labels)
    improved = active & (margin < loss_min)
    loss_min = jnp.where(improved, margin, loss_min)
    take = improved | (active & (margin <= 0))
    return (i + 1, common.select(take, x_new, x_best), jnp.where(take, margin, margin_min),
            loss_min)

  def running(carry):  # Stop early once every correctly classified example is fooled.
    i, _, margin_min, _ = carry
    return (i < n_queries) & jnp.any(correct & (margin_min > 0))

  _, x_best, _, _ = jax.lax.while_loop(running, body, (0, x_best, margin_min, loss_min))
  fooled = correct & (jnp.argmax(predict_fn(x_best), -1) != labels)
  return jax.lax.stop_gradient(common.select(fooled, x_best, images))
