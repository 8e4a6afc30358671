"""Θ_imi and Θ_imc of the effective per-sample operators: the mechanism COIN's paper argues with.

The paper models a convolution-poisoned sample as x~ = A_y x with a class-wise matrix A_y, and
argues that a defense works by raising the intra-class matrix inconsistency (Θ_imi) and the
inter-class matrix consistency (Θ_imc). Its exact formulas were not available, so jaxcv computes
this documented proxy on single-channel H x W operators:

  Θ_imi = mean over classes k of  E_i ||A_{k,i} - mean_i A_{k,i}||_F
          (also reported relative to ||mean_i A_{k,i}||_F, which is scale-free)
  Θ_imc = mean over class pairs k != k' of cos(vec Ā_k, vec Ā_k')

with A_{k,i} = A_k (CUDA: every sample of a class shares its filter, so Θ_imi = 0) or R_i A_k
under COIN (R_i the bilinear-displacement matrix of sample i's random fields). The operators are
the linear parts only: CUDA's per-image max normalisation (a positive scale) and both uint8
truncations are left out.
"""

from __future__ import annotations

from typing import Iterable, Optional

import jax
import jax.numpy as jnp
import numpy as np

from jaxcv.unlearnable import coin as coin_lib
from jaxcv.unlearnable.convolution import convolve


def linear_operator(fn, height: int, width: int) -> jax.Array:
  """The [H*W, H*W] matrix A of a linear map `fn` on single-channel images [N, H, W, 1], built by
  applying it to the pixel basis: column j of A is fn(e_j), so vec(fn(x)) = A @ vec(x)."""
  basis = jnp.eye(height * width, dtype=jnp.float32).reshape(height * width, height, width, 1)
  return fn(basis).reshape(height * width, height * width).T


def convolution_operator(kernel: jax.Array, size: int) -> jax.Array:
  """The matrix of the zero-padded depthwise convolution with one [kh, kw] kernel."""
  n = size * size
  return linear_operator(
      lambda x: convolve(x, jnp.broadcast_to(kernel, (n, *kernel.shape))), size, size)


def coin_operator(dy: jax.Array, dx: jax.Array, wrap: str = 'legacy') -> jax.Array:
  """The matrix R of COIN's bilinear displacement with fixed fields dy, dx [H, W]."""
  h, w = dy.shape
  return linear_operator(lambda x: coin_lib.bilinear_warp(x, dy, dx, wrap), h, w)


def theta_metrics(class_operators: Iterable[jax.Array]) -> dict[str, float]:
  """Θ proxies from each class's per-sample operators [n, D, D] (an iterable over classes, so
  that only one class's operators are in memory at a time)."""
  means, spread, relative = [], [], []
  for ops in class_operators:
    ops = jnp.asarray(ops, jnp.float32)
    mean = ops.mean(axis=0)
    deviation = jnp.sqrt(jnp.sum((ops - mean) ** 2, axis=(1, 2))).mean()
    spread.append(float(deviation))
    relative.append(float(deviation / jnp.linalg.norm(mean)))
    means.append(np.asarray(mean).ravel())
  means = np.stack(means)
  unit = means / np.linalg.norm(means, axis=1, keepdims=True)
  cos = unit @ unit.T
  off_diagonal = ~np.eye(len(means), dtype=bool)
  distances = np.linalg.norm(means[:, None] - means[None], axis=-1)
  return {
      'theta_imi': float(np.mean(spread)),
      'theta_imi_relative': float(np.mean(relative)),
      'theta_imc': float(cos[off_diagonal].mean()),
      'inter_class_distance': float(distances[off_diagonal].mean()),
  }


def unlearnable_theta(kernels: np.ndarray, size: int = 32, samples_per_class: int = 16,
                      alpha: Optional[float] = None, wrap: str = 'legacy',
                      seed: int = 0) -> dict[str, float]:
  """Θ proxies of the class filters `kernels` [K, kh, kw] on size x size images: the attack alone
  (alpha None) or followed by COIN with that alpha (fresh random fields per sample)."""
  rng = jax.random.key(seed)

  @jax.jit
  def class_ops(kernel, class_rng):
    base = convolution_operator(kernel, size)
    if alpha is None:
      return jnp.broadcast_to(base, (samples_per_class, *base.shape))
    dy, dx = coin_lib.displacement_fields(class_rng, (samples_per_class, size, size), alpha)
    # R_i A_k: COIN's warp applied to every column of A_k, seen as an image.
    columns = base.T.reshape(size * size, size, size, 1)
    warp = lambda fy, fx: coin_lib.bilinear_warp(columns, fy, fx, wrap).reshape(
        size * size, size * size).T
    return jax.vmap(warp)(dy, dx)

  return theta_metrics(class_ops(jnp.asarray(k), jax.random.fold_in(rng, i))
                       for i, k in enumerate(kernels))
