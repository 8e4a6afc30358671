"""The kernel two-sample test of CADet §(a): kernels, the unbiased MMD², a batched permutation
test, power against sample size and the type-I check.

Kernels act on rows of a pooled sample [m + n, D]:
  cosine_kernel     <z_x, z_y> of unit-norm contrastive embeddings (CADet's learned similarity;
                    with a plain cosine, MMD² is the squared distance of the mean embeddings)
  gaussian_kernel   exp(-|x - y|² / (2 sigma²)) on flattened pixels, sigma the median pairwise
                    distance of the pooled sample (the MMD-O-like baseline)

The permutation test re-splits the pooled sample B times. Every split is an indicator vector s
(1 = first sample), and the unbiased MMD² is a quadratic form in s of the one pooled kernel
matrix K, so all B + 1 statistics come from one matrix product [B + 1, N] @ [N, N]: no library
offers this batched form in JAX, hence written here.
"""

from __future__ import annotations

import functools
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxcv.errors import ConfigError

KERNELS = ('cosine', 'gaussian')


def cosine_kernel(pooled: jax.Array) -> jax.Array:
  """K[i, j] = <z_i, z_j> of the rows normalised to unit length."""
  z = pooled / jnp.linalg.norm(pooled, axis=1, keepdims=True).clip(1e-12)
  return z @ z.T


def squared_distances(pooled: jax.Array) -> jax.Array:
  sq = jnp.sum(pooled * pooled, axis=1)
  return jnp.maximum(sq[:, None] + sq[None, :] - 2 * pooled @ pooled.T, 0.0)


def gaussian_kernel(pooled: jax.Array, sigma=None) -> jax.Array:
  """exp(-d² / (2 sigma²)); sigma None: the median pairwise distance (off the diagonal)."""
  d2 = squared_distances(pooled.reshape(pooled.shape[0], -1).astype(jnp.float32))
  if sigma is None:
    n = d2.shape[0]
    off = d2[~np.eye(n, dtype=bool)]
    sigma2 = jnp.median(off)
  else:
    sigma2 = jnp.asarray(sigma, jnp.float32) ** 2
  return jnp.exp(-d2 / (2 * jnp.maximum(sigma2, 1e-12)))


def kernel_fn(name: str) -> Callable[[jax.Array], jax.Array]:
  if name == 'cosine':
    return cosine_kernel
  if name == 'gaussian':
    return gaussian_kernel
  raise ConfigError(f'unknown MMD kernel {name!r}; known: {", ".join(KERNELS)}')


def mmd2_from_assignments(kernel: jax.Array, assign: jax.Array) -> jax.Array:
  """Unbiased MMD² for each row of `assign` [B, N] (1: first sample, 0: second) on the pooled
  kernel matrix [N, N]:
    sum_{i!=j in X} k / (m(m-1)) + sum_{i!=j in Y} k / (n(n-1)) - 2 sum_{X x Y} k / (mn)."""
  s = assign.astype(kernel.dtype)
  t = 1.0 - s
  m, n = jnp.sum(s, axis=1), jnp.sum(t, axis=1)
  diag = jnp.diag(kernel)
  ks = s @ kernel  # [B, N]
  kt = t @ kernel
  xx = jnp.sum(ks * s, axis=1) - s @ diag
  yy = jnp.sum(kt * t, axis=1) - t @ diag
  xy = jnp.sum(ks * t, axis=1)
  return xx / (m * (m - 1)) + yy / (n * (n - 1)) - 2 * xy / (m * n)


def mmd2_unbiased(kernel: jax.Array, m: int) -> jax.Array:
  """Unbiased MMD² of the first m rows against the rest of the pooled kernel matrix."""
  assign = (jnp.arange(kernel.shape[0]) < m)[None]
  return mmd2_from_assignments(kernel, assign)[0]


@functools.partial(jax.jit, static_argnames=('m', 'permutations'))
def _exceedances(kernel: jax.Array, m: int, rng: jax.Array,
                 permutations: int) -> tuple[jax.Array, jax.Array]:
  n_total = kernel.shape[0]
  observed = jnp.arange(n_total) < m
  keys = jax.random.split(rng, permutations)
  permuted = jax.vmap(lambda k: jax.random.permutation(k, observed))(keys)
  stats = mmd2_from_assignments(kernel, jnp.concatenate([observed[None], permuted]))
  return stats[0], jnp.sum(stats[1:] >= stats[0])


def permutation_test(kernel: jax.Array, m: int, rng: jax.Array,
                     permutations: int = 100) -> tuple[float, float]:
  """(observed MMD², p-value) of the first m rows against the rest:
  p = (1 + #{permuted MMD² >= observed}) / (B + 1), B = `permutations` random re-splits.
  The p-value is formed on the host in float64, so p <= alpha is exact at p = alpha."""
  stat, count = _exceedances(kernel, m, rng, permutations)
  return float(stat), (1 + int(count)) / (permutations + 1)


def _draw(rng: np.random.Generator, pool: np.ndarray, n: int) -> np.ndarray:
  if n > len(pool):
    raise ConfigError(f'a sample of {n} needs at least {n} examples, the pool has {len(pool)}')
  return pool[rng.choice(len(pool), n, replace=False)]


def _draw_disjoint(rng: np.random.Generator, x_pool: np.ndarray, y_pool: np.ndarray,
                   n: int) -> tuple[np.ndarray, np.ndarray]:
  """n rows of x_pool and n rows of y_pool at 2n distinct indices (pools aligned row by row)."""
  if len(x_pool) != len(y_pool):
    raise ConfigError(f'disjoint draws need aligned pools, got {len(x_pool)} and {len(y_pool)}')
  if 2 * n > len(x_pool):
    raise ConfigError(f'two disjoint samples of {n} need {2 * n} examples, the pool has '
                      f'{len(x_pool)}')
  index = rng.choice(len(x_pool), 2 * n, replace=False)
  return x_pool[index[:n]], y_pool[index[n:]]


def rejection_rate(x_pool: np.ndarray, y_pool: np.ndarray, kernel: str, n: int, *,
                   trials: int, permutations: int = 100, alpha: float = 0.05,
                   seed: int = 0, disjoint: bool = False) -> dict[str, float]:
  """Draws n rows from each pool `trials` times and runs the permutation test each time:
  {'rate': fraction with p <= alpha (power, or the type-I error when both pools are one
  distribution), 'mean_p', 'mean_mmd2'}. Rows are embeddings (cosine) or images (gaussian).

  disjoint: the pools are aligned (row i of y_pool is a version of row i of x_pool, or the same
  row) and each trial draws its two samples at 2n distinct indices, fresh every trial. With
  y_pool = x_pool this is the exact null (two random disjoint halves of one set): fixed halves
  drawn from again and again would test those two finite halves against each other instead."""
  fn = kernel_fn(kernel)
  rng = np.random.default_rng(seed)
  key = jax.random.key(seed)
  pvalues, stats = [], []
  for trial in range(trials):
    x, y = (_draw_disjoint(rng, x_pool, y_pool, n) if disjoint
            else (_draw(rng, x_pool, n), _draw(rng, y_pool, n)))
    pooled = np.concatenate([x, y]).astype(np.float32)
    stat, p = permutation_test(fn(jnp.asarray(pooled)), n, jax.random.fold_in(key, trial),
                               permutations)
    pvalues.append(p)
    stats.append(stat)
  pvalues = np.asarray(pvalues)
  return {'rate': float(np.mean(pvalues <= alpha)), 'mean_p': float(np.mean(pvalues)),
          'mean_mmd2': float(np.mean(stats))}


def power_curve(x_pool: np.ndarray, y_pool: np.ndarray, kernel: str, sizes: Sequence[int], *,
                trials: int, permutations: int = 100, alpha: float = 0.05, seed: int = 0,
                disjoint: bool = False) -> dict[int, dict[str, float]]:
  """rejection_rate for each sample size n in `sizes` (sizes the pools cannot give are skipped)."""
  limit = len(x_pool) // 2 if disjoint else min(len(x_pool), len(y_pool))
  return {int(n): rejection_rate(x_pool, y_pool, kernel, int(n), trials=trials,
                                 permutations=permutations, alpha=alpha, seed=seed + int(n),
                                 disjoint=disjoint)
          for n in sizes if n <= limit}
