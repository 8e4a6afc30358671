"""DenseNet-BC, CIFAR variant (kuangliu/pytorch-cifar `models/densenet.py`).

A 3x3 stem conv of 2 x growth channels (stride 1, no pool), four dense blocks of pre-activation
bottleneck layers (BN-ReLU-1x1 conv to 4 x growth, BN-ReLU-3x3 conv to growth, the output
concatenated in front of the input), transitions (BN-ReLU-1x1 conv to floor(reduction x
channels), 2x2 average pool) between blocks, then BN-ReLU and a global average pool (the
reference's 4x4 pool at 32x32). DenseNet-121: blocks (6, 12, 24, 16), growth 32, 1024-d
features, 6,956,298 parameters with 10 classes, as the reference. One of COIN's four
architectures (docs/coin.md).
"""

from __future__ import annotations

import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxcv.errors import ConfigError
from jaxcv.models.layers import Classifier, batch_norm, conv, global_avg_pool


class DenseLayer(nn.Module):
  """BN-ReLU-conv1x1 (4 x growth) -> BN-ReLU-conv3x3 (growth); returns [new, input]."""
  growth_rate: int
  dtype: Any

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    h = nn.relu(batch_norm(train, dtype=self.dtype, name='bn1')(x))
    h = conv(4 * self.growth_rate, 1, dtype=self.dtype, name='conv1')(h)
    h = nn.relu(batch_norm(train, dtype=self.dtype, name='bn2')(h))
    h = conv(self.growth_rate, 3, dtype=self.dtype, name='conv2')(h)
    return jnp.concatenate([h, x], axis=-1)


class DenseNet(Classifier):
  """DenseNet-BC with a CIFAR stem.

  Attributes:
    block_sizes: bottleneck layers per dense block.
    growth_rate: channels each layer adds.
    reduction: channel compression of the transitions.

  Sows each dense block's output as `intermediates/stage1`..`stage{len(block_sizes)}`.
  """
  block_sizes: tuple[int, ...] = (6, 12, 24, 16)
  growth_rate: int = 32
  reduction: float = 0.5

  def _widths(self) -> list[tuple[int, int]]:
    """(channels after the dense block, after its transition) per block; the last block has no
    transition (its second entry repeats the first)."""
    if not self.block_sizes or self.growth_rate < 1 or not 0 < self.reduction <= 1:
      raise ConfigError(f'DenseNet needs blocks, growth_rate >= 1 and 0 < reduction <= 1; got '
                        f'{self.block_sizes!r}, {self.growth_rate!r}, {self.reduction!r}')
    widths, channels = [], 2 * self.growth_rate
    for i, size in enumerate(self.block_sizes):
      channels += size * self.growth_rate
      after = channels
      if i < len(self.block_sizes) - 1:
        after = int(math.floor(channels * self.reduction))
      widths.append((channels, after))
      channels = after
    return widths

  @property
  def feature_dim(self) -> int:
    return self._widths()[-1][0]

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool = False,
               return_features: bool = False):
    widths = self._widths()
    h = conv(2 * self.growth_rate, 3, dtype=self.dtype, name='conv1')(self.normalize(x))
    for i, size in enumerate(self.block_sizes):
      for j in range(size):
        h = DenseLayer(self.growth_rate, self.dtype, name=f'block{i + 1}_layer{j + 1}')(h, train)
      self.sow('intermediates', f'stage{i + 1}', h)
      if i < len(self.block_sizes) - 1:  # Transition.
        h = nn.relu(batch_norm(train, dtype=self.dtype, name=f'transition{i + 1}_bn')(h))
        h = conv(widths[i][1], 1, dtype=self.dtype, name=f'transition{i + 1}_conv')(h)
        h = nn.avg_pool(h, (2, 2), strides=(2, 2))
    h = nn.relu(batch_norm(train, dtype=self.dtype, name='bn')(h))
    return self.finish(global_avg_pool(h), return_features)
