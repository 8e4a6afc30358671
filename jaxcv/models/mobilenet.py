"""MobileNetV2, CIFAR variant (kuangliu/pytorch-cifar `models/mobilenetv2.py`).

As the reference: the stem conv and the second stage have stride 1 instead of 2 (32x32 inputs),
ReLU (not ReLU6), and every stride-1 block has a residual connection, through a 1x1 conv + BN
when the width changes. A 1x1 conv to 1280 channels, BN-ReLU and a global average pool (the
reference's 4x4 pool at 32x32) give the features. 2,296,922 parameters with 10 classes, as the
reference. One of COIN's four architectures (docs/coin.md).
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax

from jaxcv.errors import ConfigError
from jaxcv.models.layers import Classifier, batch_norm, conv, global_avg_pool

# (expansion, output channels, blocks, stride of the first block), the reference's CIFAR table.
CIFAR_STAGES = ((1, 16, 1, 1), (6, 24, 2, 1), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
                (6, 160, 3, 2), (6, 320, 1, 1))


class InvertedResidual(nn.Module):
  """1x1 expand -> 3x3 depthwise (strided) -> 1x1 linear projection, plus the shortcut."""
  channels: int
  expansion: int
  stride: int
  dtype: Any

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    hidden = self.expansion * x.shape[-1]
    h = conv(hidden, 1, dtype=self.dtype, name='conv1')(x)
    h = nn.relu(batch_norm(train, dtype=self.dtype, name='bn1')(h))
    h = conv(hidden, 3, self.stride, groups=hidden, dtype=self.dtype, name='conv2')(h)
    h = nn.relu(batch_norm(train, dtype=self.dtype, name='bn2')(h))
    h = conv(self.channels, 1, dtype=self.dtype, name='conv3')(h)
    h = batch_norm(train, dtype=self.dtype, name='bn3')(h)
    if self.stride != 1:
      return h
    if x.shape[-1] != self.channels:
      x = conv(self.channels, 1, dtype=self.dtype, name='shortcut_conv')(x)
      x = batch_norm(train, dtype=self.dtype, name='shortcut_bn')(x)
    return h + x


class MobileNetV2(Classifier):
  """MobileNetV2 with the CIFAR strides.

  Attributes:
    stages: (expansion, channels, blocks, first stride) per stage.
    stem_width: channels of the 3x3 stem conv.
    head_width: channels of the final 1x1 conv (the feature dimension).

  Sows each stage's output as `intermediates/stage1`..`stage{len(stages)}`.
  """
  stages: tuple[tuple[int, int, int, int], ...] = CIFAR_STAGES
  stem_width: int = 32
  head_width: int = 1280

  @property
  def feature_dim(self) -> int:
    if not self.stages or any(len(stage) != 4 for stage in self.stages):
      raise ConfigError('MobileNetV2 stages must be (expansion, channels, blocks, stride) '
                        f'tuples, got {self.stages!r}')
    return self.head_width

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool = False,
               return_features: bool = False):
    h = conv(self.stem_width, 3, dtype=self.dtype, name='conv1')(self.normalize(x))
    h = nn.relu(batch_norm(train, dtype=self.dtype, name='bn1')(h))
    for i, (expansion, channels, blocks, stride) in enumerate(self.stages):
      for j in range(blocks):
        h = InvertedResidual(channels, expansion, stride if j == 0 else 1, self.dtype,
                             name=f'stage{i + 1}_block{j + 1}')(h, train)
      self.sow('intermediates', f'stage{i + 1}', h)
    h = conv(self.head_width, 1, dtype=self.dtype, name='conv2')(h)
    h = nn.relu(batch_norm(train, dtype=self.dtype, name='bn2')(h))
    return self.finish(global_avg_pool(h), return_features)
