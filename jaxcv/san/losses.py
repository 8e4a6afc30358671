"""The losses of SAN (arXiv 2211.14513) and of its IIC and PiCIE-style baselines, in jnp.

SAN has no official code; the forms below are the reconstruction in
../shared/papers/08-san-unsupervised-segmentation.md (docs/san.md says which are inferred):
  consistency      L_Con = mean over pixels ||F - F_hat||^2 (the consistency sustainer, L2)
  reconstruction   L_Rec = mean squared error of the decoded image
  orthogonality    ||S S^T - I||_F^2 on the L2-normalised semantic embeddings S [K, D]
IIC's segmentation loss is transcribed from IIC's `IID_segmentation_loss`
(xu-ji/IIC, code/utils/segmentation/IID_losses.py); PiCIE's from its within- and cross-view
cluster cross-entropies (janghyuncho/PiCIE, train_picie.py).
"""

from __future__ import annotations

import sys

import jax
import jax.numpy as jnp
import optax

# IIC clamps probabilities below this before the log (sys.float_info.epsilon in its code).
IIC_EPS = sys.float_info.epsilon


def masked_mean(values: jax.Array, mask=None) -> jax.Array:
  """Mean of `values` [..] over the entries where `mask` (broadcastable, {0, 1}) is set."""
  if mask is None:
    return jnp.mean(values)
  mask = jnp.broadcast_to(mask, values.shape).astype(values.dtype)
  return jnp.sum(values * mask) / jnp.maximum(jnp.sum(mask), 1.0)


def consistency_loss(features: jax.Array, generated: jax.Array) -> jax.Array:
  """L_Con: mean over pixels of the squared L2 distance between the pixel embeddings F and the
  features SEAT generates from the semantic embeddings, F_hat = A S ([..., D] each)."""
  return jnp.mean(jnp.sum(jnp.square(features - generated), -1))


def reconstruction_loss(reconstruction: jax.Array, images: jax.Array) -> jax.Array:
  """L_Rec: mean squared error between the decoded and the input images."""
  return jnp.mean(jnp.square(reconstruction - images))


def orthogonality_loss(semantic: jax.Array) -> jax.Array:
  """||S S^T - I||_F^2 for semantic embeddings S [K, D] (normalised here, so only their
  directions count): 0 when the K embeddings are orthonormal."""
  s = semantic / jnp.maximum(jnp.linalg.norm(semantic, axis=-1, keepdims=True), 1e-8)
  gram = s @ s.T
  return jnp.sum(jnp.square(gram - jnp.eye(s.shape[0], dtype=s.dtype)))


def iic_joint(p1: jax.Array, p2: jax.Array, half_t: int, mask=None) -> jax.Array:
  """IIC's joint distribution [K, K] of the cluster assignments of two aligned views.

  p1, p2: [N, h, w, K] probabilities, p2 already warped into p1's frame; mask [N, h, w] (1 where
  both views see the pixel). The joint sums p1(x) p2(x + d)^T over pixels x and displacements d in
  [-half_t, half_t]^2 (IIC's F.conv2d with padding half_t: out-of-image neighbours are zero),
  then is normalised by its sum and symmetrised.
  """
  if mask is not None:
    p1 = p1 * mask[..., None]
    p2 = p2 * mask[..., None]
  h, w = p1.shape[1:3]
  padded = jnp.pad(p2, ((0, 0), (half_t, half_t), (half_t, half_t), (0, 0)))
  joint = 0.0
  for dy in range(2 * half_t + 1):  # A few static shifts: no conv with a [K, N, h, w] filter.
    for dx in range(2 * half_t + 1):
      joint = joint + jnp.einsum('nyxi,nyxj->ij', p1, padded[:, dy:dy + h, dx:dx + w])
  joint = joint / jnp.sum(joint)
  return (joint + joint.T) / 2.0


def iic_loss(p1: jax.Array, p2: jax.Array, half_t: int = 1, lamb: float = 1.0,
             mask=None) -> jax.Array:
  """IIC's segmentation loss: -sum P (log P - lamb log P_i - lamb log P_j), P = `iic_joint`.

  Minimising it maximises the mutual information of the two views' assignments (lamb = 1);
  lamb > 1 weights the marginals' entropy more (IIC's commands use 1.0 or 1.5).
  """
  joint = iic_joint(p1, p2, half_t, mask)
  p_i = jnp.sum(joint, axis=1, keepdims=True)
  p_j = jnp.sum(joint, axis=0, keepdims=True)
  # IIC sets entries below EPS to EPS in place (so they pass no gradient), marginals after.
  joint = jnp.maximum(joint, IIC_EPS)
  p_i, p_j = jnp.maximum(p_i, IIC_EPS), jnp.maximum(p_j, IIC_EPS)
  return -jnp.sum(joint * (jnp.log(joint) - lamb * jnp.log(p_i) - lamb * jnp.log(p_j)))


def picie_loss(logits1: jax.Array, logits2: jax.Array, labels1: jax.Array, labels2: jax.Array,
               mask=None) -> tuple[jax.Array, jax.Array]:
  """PiCIE's (within-view, cross-view) cluster cross-entropies, each the mean of its two terms.

  logits*: [N, h, w, K] scores of each view's pixels against the centroids (view 2 warped into
  view 1's frame); labels*: [N, h, w] each view's nearest-centroid assignment (held fixed).
  within = (CE(logits1, labels1) + CE(logits2, labels2)) / 2, cross = (CE(logits1, labels2) +
  CE(logits2, labels1)) / 2: the photometric invariance and geometric equivariance terms.
  """
  ce = optax.softmax_cross_entropy_with_integer_labels
  within = (masked_mean(ce(logits1, labels1), mask) + masked_mean(ce(logits2, labels2), mask)) / 2
  cross = (masked_mean(ce(logits1, labels2), mask) + masked_mean(ce(logits2, labels1), mask)) / 2
  return within, cross
