"""FGSM (Goodfellow et al. 2015) and PGD (Madry et al. 2018) under L-inf or L2.

`pgd` takes any step schedule (a float or a function of the step index, e.g. an optax schedule),
a uniform random start, and restarts; per example it keeps the first restart that fools the
model, otherwise the one with the highest final loss.
"""

from __future__ import annotations

from typing import Any, Optional, Union

import jax
import jax.numpy as jnp

from jaxcv.attacks import common
from jaxcv.errors import ConfigError


def fgsm(predict_fn: common.PredictFn, images: jax.Array, labels: Any, *, eps: float,
         norm: str = 'linf', loss: Union[str, common.LossFn] = 'ce') -> jax.Array:
  """One step of size eps along the (sign of the) loss gradient, clipped to [0, 1]."""
  common.check_norm(norm)
  images = images.astype(jnp.float32)
  _, grad, _ = common.loss_and_grad(predict_fn, common.get_loss(loss), images, labels)
  x_adv = images + eps * common.ascent_direction(grad, norm)
  return jax.lax.stop_gradient(common.project(x_adv, images, eps, norm))


def _pgd_once(predict_fn, loss_fn, images, labels, rng, eps, step_size, steps, norm,
              random_start, random_start_std):
  if random_start_std is not None:  # TRADES-style start: small Gaussian noise.
    x = images + random_start_std * jax.random.normal(rng, images.shape, jnp.float32)
    x = common.project(x, images, eps, norm)
  elif random_start:
    x = common.random_start(rng, images, eps, norm)
  else:
    x = images

  def body(i, x):
    _, grad, _ = common.loss_and_grad(predict_fn, loss_fn, x, labels)
    x = x + common.step_size_at(step_size, i) * common.ascent_direction(grad, norm)
    return common.project(x, images, eps, norm)

  return jax.lax.fori_loop(0, steps, body, x)


def pgd(predict_fn: common.PredictFn, images: jax.Array, labels: Any, rng: jax.Array, *,
        eps: float, step_size: common.StepSize, steps: int, norm: str = 'linf',
        random_start: bool = True, restarts: int = 1,
        loss: Union[str, common.LossFn] = 'ce',
        random_start_std: Optional[float] = None,
        success_labels: Optional[jax.Array] = None) -> jax.Array:
  """Projected gradient ascent on `loss` within the eps-ball; returns adversarial images.

  Args:
    predict_fn: images -> logits (a closure over the model's variables).
    labels: what the loss compares logits with: integer labels for 'ce'/'cw'/'dlr', anything a
      callable loss takes (e.g. clean probabilities for TRADES).
    step_size: a float, or a function of the step index (0-based) returning the step size.
    restarts: independent random starts; per example the first that fools the model is kept,
      else the highest-loss one. Needs integer labels (or `success_labels`) when > 1.
    random_start_std: if set, start from x + N(0, std^2) instead of a uniform ball point.
  """
  common.check_norm(norm)
  if steps < 0 or restarts < 1:
    raise ConfigError(f'pgd needs steps >= 0 and restarts >= 1, got {steps}, {restarts}')
  loss_fn = common.get_loss(loss)
  images = jax.lax.stop_gradient(images.astype(jnp.float32))
  attack = lambda r: _pgd_once(predict_fn, loss_fn, images, labels, r, eps, step_size, steps,
                               norm, random_start, random_start_std)
  if restarts == 1:
    return jax.lax.stop_gradient(attack(rng))
  success_labels = labels if success_labels is None else success_labels

  def run(i):
    x = attack(jax.random.fold_in(rng, i))
    logits = predict_fn(x)
    return x, common.fooled(logits, success_labels), loss_fn(logits, labels)

  return jax.lax.stop_gradient(common.best_of(run, restarts)[0])
