"""The airbench94 network (Jordan, "94% on CIFAR-10 in 3.29 Seconds on a Single GPU",
arXiv 2404.00498), in the conventions of `layers.Classifier`.

A frozen 2x2 patch-whitening convolution (24 filters: the eigenvectors of the training patches'
covariance scaled by 1/sqrt(eigenvalue + eps), and their negatives) with a trainable bias, GELU,
then three ConvGroups (conv3x3 -> max-pool 2 -> BN -> GELU -> conv3x3 -> BN -> GELU) of widths
64/256/256, a 3x3 max-pool, and a bias-free linear head on features scaled by 1/9.

Paper details kept: BatchNorm without a scale, eps 1e-12, running-stat momentum 0.6; 3x3 convs
start as identity (Dirac) filters on their first `in_channels` outputs, PyTorch's default
uniform init elsewhere; exact GELU. The whitening filters live in the non-trainable collection
'whitening' and come from `data_init(train_images)`, which `Task.prepare` calls.
"""

from __future__ import annotations

import functools
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxcv.models.layers import Classifier

# PyTorch's default conv/linear weight init: U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
_torch_default_init = nn.initializers.variance_scaling(1 / 3, 'fan_in', 'uniform')


def dirac_init(key: jax.Array, shape: Sequence[int], dtype: Any = jnp.float32) -> jax.Array:
  """PyTorch default init, then identity filters on the first min(in, out) output channels.

  Matches `torch.nn.init.dirac_(w[:w.size(1)])` for an HWIO kernel.
  """
  kh, kw, cin, cout = shape
  kernel = _torch_default_init(key, shape, dtype)
  n = min(cin, cout)
  identity = jnp.zeros((kh, kw, cin, n), dtype).at[kh // 2, kw // 2].set(jnp.eye(cin, n, dtype=dtype))
  return kernel.at[..., :n].set(identity)


def whitening_kernel(images: np.ndarray, mean: Sequence[float], std: Sequence[float],
                     patch_size: int = 2, eps: float = 5e-4) -> jax.Array:
  """HWIO kernel [p, p, C, 2*p*p*C] whitening the p x p patches of `images` (uint8 NHWC).

  Eigenvectors of the (uncentred) patch covariance of the normalised images, largest
  eigenvalue first, divided by sqrt(eigenvalue + eps), followed by their negatives. Runs as one
  jitted computation on the default device.
  """
  return _whitening(jnp.asarray(images), jnp.asarray(mean, jnp.float32),
                    jnp.asarray(std, jnp.float32), patch_size=patch_size, eps=eps)


@functools.partial(jax.jit, static_argnames=('patch_size', 'eps'))
def _whitening(images, mean, std, *, patch_size: int, eps: float) -> jax.Array:
  x = (images.astype(jnp.float32) / 255.0 - mean) / std
  n, h, w, c = x.shape
  oh, ow = h - patch_size + 1, w - patch_size + 1
  # Patch vectors in (dy, dx, channel) order, the HWIO kernel's flattening order.
  patches = jnp.concatenate([x[:, dy:dy + oh, dx:dx + ow, :] for dy in range(patch_size)
                             for dx in range(patch_size)], axis=-1).reshape(-1, patch_size**2 * c)
  cov = jnp.matmul(patches.T, patches, precision='highest') / patches.shape[0]
  eigenvalues, eigenvectors = jnp.linalg.eigh(cov)
  eigenvalues, eigenvectors = eigenvalues[::-1], eigenvectors[:, ::-1]  # Largest first.
  filters = eigenvectors / jnp.sqrt(eigenvalues + eps)  # One filter per column.
  kernel = filters.reshape(patch_size, patch_size, c, -1)
  return jnp.concatenate([kernel, -kernel], axis=-1)


def _batch_norm(train: bool, momentum: float, name: str) -> nn.BatchNorm:
  return nn.BatchNorm(use_running_average=not train, momentum=momentum, epsilon=1e-12,
                      use_scale=False, use_bias=True, param_dtype=jnp.float32, name=name)


class ConvGroup(nn.Module):
  channels: int
  bn_momentum: float
  dtype: Any

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    conv = lambda name: nn.Conv(self.channels, (3, 3), padding='SAME', use_bias=False,
                                kernel_init=dirac_init, dtype=self.dtype,
                                param_dtype=jnp.float32, name=name)
    x = conv('conv1')(x)
    x = nn.max_pool(x, (2, 2), strides=(2, 2))
    x = nn.gelu(_batch_norm(train, self.bn_momentum, 'norm1')(x).astype(self.dtype),
                approximate=False)
    x = conv('conv2')(x)
    return nn.gelu(_batch_norm(train, self.bn_momentum, 'norm2')(x).astype(self.dtype),
                   approximate=False)


class AirbenchNet(Classifier):
  """airbench94's network. `widths` are the three ConvGroups' channel counts.

  Sows the group outputs as `intermediates/group1..3`.
  """
  widths: tuple[int, ...] = (64, 256, 256)
  bn_momentum: float = 0.6
  scaling_factor: float = 1 / 9
  whiten_patch_size: int = 2
  whiten_eps: float = 5e-4

  @property
  def feature_dim(self) -> int:
    return self.widths[-1]

  def setup(self):
    # airbench's head has no bias; it is still the float32 `head` Dense of the convention.
    self.head = nn.Dense(self.num_classes, use_bias=False, dtype=jnp.float32,
                         param_dtype=jnp.float32, kernel_init=_torch_default_init)

  @property
  def whiten_width(self) -> int:
    return 2 * 3 * self.whiten_patch_size**2

  def data_init(self, train_images: np.ndarray, max_images: int = 5000) -> dict:
    """{'whitening': {'kernel': ...}} from the first `max_images` training images (uint8)."""
    kernel = whitening_kernel(train_images[:max_images], self.input_mean or (0.0,) * 3,
                              self.input_std or (1.0,) * 3, self.whiten_patch_size,
                              self.whiten_eps)
    return {'whitening': {'kernel': kernel}}

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool = False, return_features: bool = False):
    h = self.normalize(x)
    p, channels = self.whiten_patch_size, x.shape[-1]
    kernel = self.variable('whitening', 'kernel', jnp.zeros,
                           (p, p, channels, 2 * p * p * channels), jnp.float32).value
    bias = self.param('whiten_bias', nn.initializers.zeros, (kernel.shape[-1],), jnp.float32)
    h = jax.lax.conv_general_dilated(h, kernel.astype(self.dtype), (1, 1), 'VALID',
                                     dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
    h = nn.gelu(h + bias.astype(self.dtype), approximate=False)
    for i, width in enumerate(self.widths):
      h = ConvGroup(width, self.bn_momentum, self.dtype, name=f'group{i + 1}')(h, train)
      self.sow('intermediates', f'group{i + 1}', h)
    h = nn.max_pool(h, (3, 3), strides=(3, 3))  # airbench's MaxPool2d(3): top-left 3x3 window.
    features = h.reshape(h.shape[0], -1).astype(jnp.float32) * self.scaling_factor
    return self.finish(features, return_features)
