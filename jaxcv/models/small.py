"""Tiny models that compile and run in seconds on a CPU, for tests and quickstarts."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxcv.errors import ConfigError
from jaxcv.models.layers import Classifier, batch_norm, conv, global_avg_pool


class SmallCNN(Classifier):
  """Two conv-BN-ReLU-maxpool stages and a global average pool.

  Has BatchNorm on purpose, so the `batch_stats` code paths of training loops
  are exercised by fast tests.

  Attributes:
    width: channels of the first conv; the second has twice as many.

  Sows unpooled stage outputs as `intermediates/stage1`, `stage2`.
  """
  width: int = 32

  @property
  def feature_dim(self) -> int:
    return 2 * self.width

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool = False,
               return_features: bool = False):
    h = self.normalize(x)
    for i, channels in enumerate((self.width, 2 * self.width)):
      h = conv(channels, 3, dtype=self.dtype, name=f'conv{i + 1}')(h)
      h = nn.relu(batch_norm(train, dtype=self.dtype, name=f'bn{i + 1}')(h))
      h = nn.max_pool(h, (2, 2), strides=(2, 2))
      self.sow('intermediates', f'stage{i + 1}', h)
    return self.finish(global_avg_pool(h), return_features)


class MLP(Classifier):
  """Flattened pixels through ReLU hidden layers; the last hidden layer is the feature.

  Attributes:
    hidden: widths of the hidden layers.

  Sows hidden activations as `intermediates/stage1`..`stage{len(hidden)}`.
  """
  hidden: tuple[int, ...] = (256, 256)

  @property
  def feature_dim(self) -> int:
    if not self.hidden:
      raise ConfigError('MLP needs at least one hidden layer')
    return self.hidden[-1]

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool = False,
               return_features: bool = False):
    h = self.normalize(x).reshape(x.shape[0], -1)
    for i, features in enumerate(self.hidden):
      h = nn.relu(nn.Dense(features, dtype=self.dtype, param_dtype=jnp.float32,
                           name=f'fc{i + 1}')(h))
      self.sow('intermediates', f'stage{i + 1}', h)
    return self.finish(h, return_features)


class MnistCNN(Classifier):
  """DomainBed's featurizer for its MNIST datasets (networks.MNIST_CNN): 3x3 convs with bias to
  64, 128 (stride 2), 128 and 128 channels, each followed by ReLU then GroupNorm(8 groups), and a
  global average pool: 128-d features. No BatchNorm, as in DomainBed. For RotatedMNIST (1
  channel) and ColoredMNIST (2 channels); the input channel count is taken from the data.

  `norm='batch'` (model name `mnist_cnn_bn`) puts BatchNorm where GroupNorm was: a variant
  with batch statistics, on which ERM++'s unfrozen-BN and BN-refresh choices can be tested.

  Sows the four stage outputs as `intermediates/stage1`..`stage4`.
  """
  norm: str = 'group'  # 'group' (DomainBed) | 'batch'.

  @property
  def feature_dim(self) -> int:
    return 128

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool = False,
               return_features: bool = False):
    h = self.normalize(x)
    for i, (channels, stride) in enumerate(((64, 1), (128, 2), (128, 1), (128, 1))):
      h = nn.Conv(channels, (3, 3), strides=(stride, stride), padding=((1, 1), (1, 1)),
                  dtype=self.dtype, param_dtype=jnp.float32, name=f'conv{i + 1}')(h)
      if self.norm == 'batch':
        h = batch_norm(train, dtype=self.dtype, name=f'norm{i + 1}')(nn.relu(h))
      elif self.norm == 'group':
        # PyTorch's GroupNorm epsilon (flax defaults to 1e-6).
        h = nn.GroupNorm(8, epsilon=1e-5, dtype=self.dtype, param_dtype=jnp.float32,
                         name=f'norm{i + 1}')(nn.relu(h))
      else:
        raise ConfigError(f"mnist_cnn norm must be 'group' or 'batch', got {self.norm!r}")
      self.sow('intermediates', f'stage{i + 1}', h)
    return self.finish(global_avg_pool(h), return_features)
