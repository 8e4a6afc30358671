"""Conventions shared by every classifier in the zoo.

Every model takes float images in [0, 1] (NHWC) and normalises them itself, so
attacks and feature visualisation can work in pixel space. Every model ends in
a float32 `head` (an `nn.Dense`) applied to pooled float32 features, so that
`head(features) == logits` holds exactly for OOD detectors that edit features.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxcv.errors import ConfigError

# Kaiming-normal with fan_out and an untruncated normal, as torchvision's
# `kaiming_normal_(mode='fan_out', nonlinearity='relu')`.
conv_kernel_init = nn.initializers.variance_scaling(2.0, 'fan_out', 'normal')


def torch_linear_bias_init(fan_in: int) -> nn.initializers.Initializer:
  """U(-1/sqrt(fan_in), 1/sqrt(fan_in)): PyTorch's default `nn.Linear` bias."""
  bound = fan_in**-0.5

  def init(key: jax.Array, shape: Sequence[int], dtype: Any = jnp.float32) -> jax.Array:
    return jax.random.uniform(key, shape, dtype, -bound, bound)

  return init


def conv(features: int, kernel: int, stride: int = 1, *, dtype: Any,
         name: str, groups: int = 1, use_bias: bool = False) -> nn.Conv:
  """Conv (bias-free unless `use_bias`) with PyTorch's symmetric `padding=kernel // 2`.

  Explicit padding (not 'SAME') keeps strided convs aligned like torchvision,
  so ported weights give the same activations. `groups` as PyTorch's (the
  input channel count for a depthwise conv).
  """
  pad = kernel // 2
  return nn.Conv(features, (kernel, kernel), strides=(stride, stride),
                 padding=((pad, pad), (pad, pad)), use_bias=use_bias,
                 feature_group_count=groups, kernel_init=conv_kernel_init,
                 dtype=dtype, param_dtype=jnp.float32, name=name)


def batch_norm(train: bool, *, dtype: Any, name: str) -> nn.BatchNorm:
  """PyTorch-equivalent BatchNorm (momentum 0.1 there is 0.9 here).

  No `axis_name`: under `jax.jit` with a sharded batch, GSPMD already makes
  the statistics global-batch ones.
  """
  return nn.BatchNorm(use_running_average=not train, momentum=0.9,
                      epsilon=1e-5, dtype=dtype, param_dtype=jnp.float32,
                      name=name)


def global_avg_pool(h: jax.Array) -> jax.Array:
  """Mean over H and W in float32, so features are float32 under bf16 compute."""
  return jnp.mean(h.astype(jnp.float32), axis=(1, 2))


class Classifier(nn.Module):
  """Base for all zoo models: pixel-space input, float32 `head` on features.

  Subclasses implement `feature_dim` and a compact `__call__` that starts with
  `self.normalize(x)` and ends with `self.finish(features, return_features)`.

  Attributes:
    num_classes: number of logits.
    dtype: compute dtype (parameters are always float32).
    input_mean: per-channel mean subtracted from the [0, 1] input, or None.
    input_std: per-channel std the input is divided by, or None.
  """
  num_classes: int
  dtype: Any = jnp.float32
  input_mean: Optional[tuple[float, ...]] = None
  input_std: Optional[tuple[float, ...]] = None

  @property
  def feature_dim(self) -> int:
    """Length D of the pooled feature vector the head is applied to."""
    raise NotImplementedError

  def setup(self):
    # float32 head: cheap, keeps logits float32 under bf16 compute, and makes
    # `classify(features)` reproduce the logits bit for bit.
    fan_in = self.feature_dim
    self.head = nn.Dense(
        self.num_classes, dtype=jnp.float32, param_dtype=jnp.float32,
        kernel_init=nn.initializers.variance_scaling(1 / 3, 'fan_in', 'uniform'),
        bias_init=torch_linear_bias_init(fan_in))

  def classify(self, features: jax.Array) -> jax.Array:
    """Logits from (possibly edited) features [N, D]; use via `method='classify'`."""
    return self.head(features.astype(jnp.float32))

  def normalize(self, x: jax.Array) -> jax.Array:
    """Maps [0, 1] pixels to the network's input space, in the compute dtype."""
    x = jnp.asarray(x, jnp.float32)
    channels = x.shape[-1]
    for attr in ('input_mean', 'input_std'):
      value = getattr(self, attr)
      if value is not None and len(value) != channels:
        raise ConfigError(f'{type(self).__name__}.{attr} has {len(value)} '
                          f'values but the input has {channels} channels')
    if self.input_mean is not None:
      x = x - jnp.asarray(self.input_mean, jnp.float32)
    if self.input_std is not None:
      x = x / jnp.asarray(self.input_std, jnp.float32)
    return x.astype(self.dtype)

  def finish(self, features: jax.Array, return_features: bool):
    """Applies the head; returns logits or (logits, features), both float32."""
    features = features.astype(jnp.float32)
    logits = self.classify(features)
    return (logits, features) if return_features else logits
