"""Adversarial shift sets: L-inf FGSM, PGD and APGD-CE (and unbounded L2 Carlini-Wagner, 'cw')
images crafted on a trained jaxcv classifier (jaxcv.attacks), untargeted against each image's
true label.

Crafted on the model under test this is BROAD's white-box split; crafted on a second,
independently trained model it is the transfer (black-box) split. `craft` returns the images
exactly as crafted, float32 in [0, 1]; the benchmark (jaxcv/ood/broad.py) scores those. A
derived dataset (`adversarial(...):cifar10`, shifts/__init__.py) must hold uint8 images, so that
path rounds them to the nearest 1/255 step: `quantize` is that rounding, and the benchmark
reports how much it weakens the attack.
"""

from __future__ import annotations

import dataclasses
from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np

from jaxcv import attacks
from jaxcv.errors import ConfigError
from jaxcv.ood import features as features_lib

ATTACKS = ('fgsm', 'pgd', 'apgd', 'cw')


@dataclasses.dataclass(frozen=True)
class AttackSettings:
  """L-inf budget eps (in 1/255 units), PGD steps and step size (1/255 units), APGD steps;
  CW-L2 ignores eps and runs `steps` Adam steps per binary-search step (5 of them)."""
  attack: str = 'pgd'
  eps: float = 8.0
  steps: int = 10
  step_size: float = 2.0
  restarts: int = 1

  def __post_init__(self):
    if self.attack not in ATTACKS:
      raise ConfigError(f'unknown attack {self.attack!r}; known: {", ".join(ATTACKS)}')
    if not self.eps > 0 or self.steps < 1:
      raise ConfigError(f'attack needs eps > 0 and steps >= 1, got {self.eps}, {self.steps}')

  @property
  def name(self) -> str:
    if self.attack == 'fgsm':
      return f'fgsm(eps={self.eps:g})'
    if self.attack == 'cw':
      return f'cw_l2({self.steps})'
    return f'{self.attack}{self.steps}(eps={self.eps:g})'

  def run(self, predict_fn, images, labels, rng):
    eps = self.eps / 255
    if self.attack == 'fgsm':
      return attacks.fgsm(predict_fn, images, labels, eps=eps)
    if self.attack == 'cw':
      return attacks.cw_l2(predict_fn, images, labels, steps=self.steps)
    if self.attack == 'pgd':
      return attacks.pgd(predict_fn, images, labels, rng, eps=eps, steps=self.steps,
                         step_size=self.step_size / 255, restarts=self.restarts)
    # best_loss: every image perturbed (APGD's default returns unfooled images clean).
    return attacks.apgd(predict_fn, images, labels, rng, eps=eps, steps=self.steps,
                        restarts=self.restarts, best_loss=True)


def craft(classifier: features_lib.Classifier, images: np.ndarray, labels: np.ndarray,
          settings: AttackSettings, *, seed: int = 0, batch_size: int = 256,
          image_shape: Optional[tuple[int, int, int]] = None) -> np.ndarray:
  """Adversarial float32 [N, H, W, C] images in [0, 1] of uint8 (or float) `images`."""
  labels = np.asarray(labels, np.int32)
  if labels.ndim != 1 or len(labels) != len(images):
    raise ConfigError('adversarial crafting needs one class label per image')
  shape = tuple(image_shape or images.shape[1:])

  def make():
    def attack_batch(variables, batch, batch_labels, rng):
      x = features_lib.prepare_images(batch, shape)
      predict = lambda z: classifier.logits(variables, z)
      return settings.run(predict, x, batch_labels, rng)
    return attack_batch

  fn = classifier.jitted(('attack', settings, shape), make)
  batch_size = min(batch_size, len(images))
  out = []
  for i, start in enumerate(range(0, len(images), batch_size)):
    batch, batch_labels = images[start:start + batch_size], labels[start:start + batch_size]
    pad = batch_size - len(batch)
    if pad:  # One compilation: pad the last batch.
      batch = np.concatenate([batch, np.zeros((pad, *batch.shape[1:]), batch.dtype)])
      batch_labels = np.concatenate([batch_labels, np.zeros(pad, np.int32)])
    rng = jax.random.fold_in(jax.random.PRNGKey(seed), i)
    out.append(np.asarray(fn(classifier.variables, batch, batch_labels, rng))[:batch_size - pad])
  return np.concatenate(out).astype(np.float32)


def quantize(images: np.ndarray) -> np.ndarray:
  """float [0, 1] -> uint8, to the nearest step (what a uint8 dataset stores)."""
  return np.clip(np.round(np.asarray(images) * 255.0), 0, 255).astype(np.uint8)


def linf_distance(adversarial: np.ndarray, clean: np.ndarray) -> float:
  """The largest |x_adv - x| over the set, in [0, 1] units (clean uint8 or float)."""
  clean = np.asarray(clean, np.float32) / (255.0 if clean.dtype == np.uint8 else 1.0)
  adversarial = (np.asarray(adversarial, np.float32)
                 / (255.0 if adversarial.dtype == np.uint8 else 1.0))
  return float(jnp.max(jnp.abs(adversarial - clean)))
