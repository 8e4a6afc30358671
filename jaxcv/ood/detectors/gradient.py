"""Detectors that need input gradients, so they score images through the model rather than a
FeatureSet: ODIN. (GradNorm needs only the head's gradient, which has a closed form:
feature.GradNorm.)"""

from __future__ import annotations

import functools
from typing import Callable

import jax
import jax.numpy as jnp

from jaxcv.errors import ConfigError
from jaxcv.ood.detectors.base import BaseDetector, register

PredictFn = Callable[[jax.Array], jax.Array]  # float images in [0, 1] -> logits


def odin_scores(predict_fn: PredictFn, images: jax.Array, temperature: float = 1000.0,
                noise: float = 0.0014) -> jax.Array:
  """ODIN (Liang et al. 2018) as in OpenOOD: x' = x - noise * sign(grad_x CE(f(x) / T, argmax f))
  (sign 0 counts as +1, as torch.ge does), score = max_c softmax(f(x') / T). Higher = ID.

  `images` are float [0, 1] pixels and the perturbation is taken there; jaxcv models normalise
  inside, so a pixel step of `noise` is OpenOOD's normalised step of noise / std: identical for
  CIFAR's std (OpenOOD hard-codes it), within ~8 % of it for ImageNet's. Pixels are not clipped
  to [0, 1], as in OpenOOD. Jittable; examples are independent (BatchNorm in eval mode).
  """
  def loss(x):
    logits = predict_fn(x).astype(jnp.float32) / temperature
    labels = jnp.argmax(jax.lax.stop_gradient(logits), -1)
    log_p = jax.nn.log_softmax(logits, -1)
    return -jnp.sum(jnp.take_along_axis(log_p, labels[:, None], -1))

  gradient = jax.grad(loss)(images)
  perturbed = images - noise * jnp.where(gradient >= 0, 1.0, -1.0)
  logits = predict_fn(perturbed).astype(jnp.float32) / temperature
  return jnp.max(jax.nn.softmax(logits, -1), -1)


@register('odin')
class ODIN(BaseDetector):
  """ODIN with OpenOOD's defaults T = 1000, noise = 0.0014 (see `odin_scores`). Higher = ID.

  Needs one backward pass per input, so it does not fit the FeatureSet path: `score` refuses,
  and `image_score_fn(predict_fn)` gives the function that scores a batch of images.
  `jaxcv.ood.evaluate` runs it as an extra pass over each split.
  """
  requires = frozenset({'model'})

  def __init__(self, temperature: float = 1000.0, noise: float = 0.0014):
    if not float(temperature) > 0 or not float(noise) >= 0:
      raise ConfigError(f'odin needs temperature > 0 and noise >= 0, got {temperature}, {noise}')
    self.temperature = float(temperature)
    self.noise = float(noise)

  def score(self, fs):
    raise ConfigError(f'{self.spec} needs input gradients: score images with '
                      'image_score_fn(predict_fn), not a feature set')

  def image_score_fn(self, predict_fn: PredictFn) -> Callable[[jax.Array], jax.Array]:
    """float [0, 1] images [N, H, W, C] -> [N] ID-ness, pure JAX (jit it, or call it under jit)."""
    return functools.partial(odin_scores, predict_fn, temperature=self.temperature,
                             noise=self.noise)
