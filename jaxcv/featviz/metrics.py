"""The MACO paper's feature-visualisation metrics, measured with jaxcv classifiers.

- target logit and probability of the clean (untransformed) visualisation on the model it was
  made for;
- transferability: the share of visualisations that other models classify as the target (top-1);
- plausibility: cosine similarity, in a model's penultimate feature space, between each
  visualisation and the mean feature of the real test images of its target class;
- an FID/KID *proxy*: Fréchet distance and KID (jaxcv.diffusion.fid) between the visualisations
  and real images of the same classes in the feature space of an independently trained jaxcv
  classifier, not Inception-v3: comparable between parameterisations here, not with the paper;
- the radial power spectrum against the data's (`spectrum.spectrum_distance`,
  `spectrum.high_frequency_ratio`).
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from jaxcv.diffusion import fid as fid_lib
from jaxcv.featviz import spectrum

FeatureFn = Callable[[jax.Array], tuple[jax.Array, jax.Array]]  # images -> (logits, features)


def to_input_size(images: np.ndarray, size: tuple[int, int]) -> np.ndarray:
  """Canvas images resized (antialiased) to a model's input size."""
  images = np.asarray(images, np.float32)
  if images.shape[1:3] == tuple(size):
    return images
  return np.asarray(jax.image.resize(images, (len(images), *size, images.shape[3]), 'linear',
                                     antialias=True))


def batched(fn: FeatureFn, images, batch_size: int = 500) -> tuple[np.ndarray, np.ndarray]:
  """(logits, features) of all images, in batches."""
  logits, features = [], []
  for start in range(0, len(images), batch_size):
    out = jax.device_get(fn(jnp.asarray(images[start:start + batch_size])))
    logits.append(np.asarray(out[0], np.float32))
    features.append(np.asarray(out[1], np.float32))
  return np.concatenate(logits), np.concatenate(features)


def target_scores(logits: np.ndarray, targets: np.ndarray) -> dict[str, float]:
  """Mean target logit and softmax probability."""
  logits = np.asarray(logits, np.float64)
  targets = np.asarray(targets)
  probs = np.asarray(jax.nn.softmax(logits, axis=-1))
  rows = np.arange(len(targets))
  return {'logit': float(logits[rows, targets].mean()),
          'prob': float(probs[rows, targets].mean())}


def top1_agreement(logits: np.ndarray, targets: np.ndarray) -> float:
  """Share of images whose top-1 class is their target."""
  return float(np.mean(np.argmax(logits, axis=-1) == np.asarray(targets)))


def class_means(features: np.ndarray, labels: np.ndarray, num_classes: int) -> np.ndarray:
  """[num_classes, D] mean feature of each class."""
  features = np.asarray(features, np.float64)
  labels = np.asarray(labels)
  means = np.zeros((num_classes, features.shape[1]))
  for c in range(num_classes):
    if np.any(labels == c):
      means[c] = features[labels == c].mean(0)
  return means


def plausibility(features: np.ndarray, targets: np.ndarray, means: np.ndarray) -> float:
  """Mean cosine similarity between each visualisation's features and its class mean."""
  features = np.asarray(features, np.float64)
  reference = means[np.asarray(targets)]
  cos = np.sum(features * reference, -1) / (
      np.linalg.norm(features, axis=-1) * np.linalg.norm(reference, axis=-1) + 1e-12)
  return float(cos.mean())


def fid_kid_proxy(features: np.ndarray, real_features: np.ndarray, space: str,
                  kid_subsets: int = 100, seed: int = 0) -> dict[str, float]:
  """FID and KID between visualisation features and real features, in a proxy feature space."""
  result = fid_lib.compare(fid_lib.stats_of(features, space), fid_lib.stats_of(real_features, space),
                           kid_subsets=kid_subsets, kid_subset_size=len(features), seed=seed)
  return {'fid_proxy': result['fid'], 'kid_proxy': result['kid']}


def spectrum_metrics(images: np.ndarray, reference_power: np.ndarray) -> dict[str, float]:
  """Log-spectrum distance and high-frequency ratio of images against a reference spectrum
  (both at the same image size)."""
  power = spectrum.radial_power_spectrum(images, num_bins=len(reference_power))
  return {'spectrum_dist': spectrum.spectrum_distance(power, reference_power),
          'hf_ratio': spectrum.high_frequency_ratio(power, reference_power)}
