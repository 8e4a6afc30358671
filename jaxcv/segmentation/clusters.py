"""Cluster usage and embedding geometry: the collapse diagnostics of unsupervised segmentation.

- `cluster_usage(counts)`: how many of the K clusters hold pixels, and the entropy of their
  shares (a collapsed model puts nearly every pixel in one or two clusters).
- `alignment(x, y)` and `uniformity(x)`: Wang & Isola (ICML 2020, "Understanding contrastive
  representation learning through alignment and uniformity on the hypersphere"), on L2-normalised
  pixel embeddings, as transcribed from the paper's reference code:
      align_loss(x, y, alpha=2) = (x - y).norm(p=2, dim=1).pow(alpha).mean()
      uniform_loss(x, t=2) = torch.pdist(x, p=2).pow(2).mul(-t).exp().mean().log()
  Lower is better for both. Uniformity is 0 when every embedding is the same point (total
  collapse) and falls (towards about -4 for t = 2) as the points spread over the sphere.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def cluster_usage(counts, min_share: float = 0.0) -> dict:
  """Usage of K clusters from their pixel counts [K] (e.g. the row sums of a confusion matrix).

  Returns clusters_used (clusters holding more than `min_share` of the pixels; with 0, any
  pixel), cluster_entropy (nats, of the share distribution) and cluster_entropy_norm (divided by
  log K: 1 = every cluster equally used, 0 = one cluster holds everything). NaN when no pixel.
  """
  counts = np.asarray(counts, np.float64).ravel()
  total = counts.sum()
  if total <= 0:
    return {'clusters_used': float('nan'), 'cluster_entropy': float('nan'),
            'cluster_entropy_norm': float('nan')}
  share = counts / total
  nonzero = share[share > 0]
  entropy = float(-(nonzero * np.log(nonzero)).sum())
  k = counts.size
  return {'clusters_used': int(np.count_nonzero(share > min_share)),
          'cluster_entropy': entropy,
          'cluster_entropy_norm': entropy / np.log(k) if k > 1 else 0.0}


def l2_normalize(x: jax.Array, axis: int = -1, eps: float = 1e-8) -> jax.Array:
  return x / jnp.maximum(jnp.linalg.norm(x, axis=axis, keepdims=True), eps)


def alignment(x: jax.Array, y: jax.Array, alpha: float = 2.0, mask=None) -> jax.Array:
  """Mean ||x_i - y_i||^alpha over positive pairs (rows of [M, D]); `mask` [M] weights rows."""
  d = jnp.linalg.norm(x - y, axis=-1) ** alpha
  if mask is None:
    return jnp.mean(d)
  mask = mask.astype(d.dtype)
  return jnp.sum(d * mask) / jnp.maximum(jnp.sum(mask), 1.0)


def uniformity(x: jax.Array, t: float = 2.0) -> jax.Array:
  """log of the mean over pairs i < j of exp(-t ||x_i - x_j||^2) for rows of x [M, D]."""
  sq = jnp.sum(x * x, -1)
  d2 = jnp.maximum(sq[:, None] + sq[None, :] - 2.0 * x @ x.T, 0.0)
  m = x.shape[0]
  upper = jnp.triu(jnp.ones((m, m), bool), k=1)  # torch.pdist's pairs: each once, no diagonal.
  # log-mean-exp over the pairs, stably.
  logits = jnp.where(upper, -t * d2, -jnp.inf)
  return jax.nn.logsumexp(logits) - jnp.log(m * (m - 1) / 2)
