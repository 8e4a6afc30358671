"""ResNets with CIFAR (kuangliu) or ImageNet (torchvision) stems.

Layer shapes, padding and initialisation follow the two reference
implementations so parameter counts match them exactly and results are
comparable with the literature.
"""

from __future__ import annotations

import functools
from typing import Any

import flax.linen as nn
import jax

from jaxcv.errors import ConfigError
from jaxcv.models.layers import Classifier, batch_norm, conv, global_avg_pool

_EXPANSION = {'basic': 1, 'bottleneck': 4}


class BasicBlock(nn.Module):
  """Two 3x3 convs; 1x1 conv + BN shortcut when the shape changes."""
  channels: int
  stride: int
  dtype: Any

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    h = conv(self.channels, 3, self.stride, dtype=self.dtype, name='conv1')(x)
    h = nn.relu(batch_norm(train, dtype=self.dtype, name='bn1')(h))
    h = conv(self.channels, 3, dtype=self.dtype, name='conv2')(h)
    h = batch_norm(train, dtype=self.dtype, name='bn2')(h)
    return nn.relu(h + _shortcut(x, self.channels, self.stride, train, self.dtype))


class Bottleneck(nn.Module):
  """1x1 -> 3x3 (strided, torchvision v1.5) -> 1x1 with 4x expansion."""
  channels: int
  stride: int
  dtype: Any

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    out = self.channels * _EXPANSION['bottleneck']
    h = conv(self.channels, 1, dtype=self.dtype, name='conv1')(x)
    h = nn.relu(batch_norm(train, dtype=self.dtype, name='bn1')(h))
    h = conv(self.channels, 3, self.stride, dtype=self.dtype, name='conv2')(h)
    h = nn.relu(batch_norm(train, dtype=self.dtype, name='bn2')(h))
    h = conv(out, 1, dtype=self.dtype, name='conv3')(h)
    h = batch_norm(train, dtype=self.dtype, name='bn3')(h)
    return nn.relu(h + _shortcut(x, out, self.stride, train, self.dtype))


def _shortcut(x: jax.Array, channels: int, stride: int, train: bool,
              dtype: Any) -> jax.Array:
  """Identity, or a projection when stride or channel count changes.

  Called inside the block's compact `__call__`, so the submodules belong to
  the block.
  """
  if stride == 1 and x.shape[-1] == channels:
    return x
  x = conv(channels, 1, stride, dtype=dtype, name='shortcut_conv')(x)
  return batch_norm(train, dtype=dtype, name='shortcut_bn')(x)


class ResNet(Classifier):
  """ResNet with stage widths `width * (1, 2, 4, 8)` and global average pool.

  Attributes:
    stage_sizes: number of blocks in each of the four stages.
    block: 'basic' (ResNet-18/34) or 'bottleneck' (ResNet-50 and up).
    stem: 'cifar' (3x3 conv, stride 1, no max-pool) or 'imagenet' (7x7 conv
      stride 2 + 3x3 max-pool stride 2). Any input size works with either.
    width: channels of the stem and the first stage.

  Sows unpooled block outputs as `intermediates/stage1`..`stage4`.
  """
  stage_sizes: tuple[int, ...] = (2, 2, 2, 2)
  block: str = 'basic'
  stem: str = 'cifar'
  width: int = 64

  @property
  def feature_dim(self) -> int:
    if self.block not in _EXPANSION:
      raise ConfigError(f"ResNet block must be one of {sorted(_EXPANSION)}, got {self.block!r}")
    return self.width * 2**(len(self.stage_sizes) - 1) * _EXPANSION[self.block]

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool = False,
               return_features: bool = False):
    block_cls = BasicBlock if self.block == 'basic' else Bottleneck
    h = self.normalize(x)
    if self.stem == 'cifar':
      h = conv(self.width, 3, dtype=self.dtype, name='conv1')(h)
      h = nn.relu(batch_norm(train, dtype=self.dtype, name='bn1')(h))
    elif self.stem == 'imagenet':
      h = conv(self.width, 7, 2, dtype=self.dtype, name='conv1')(h)
      h = nn.relu(batch_norm(train, dtype=self.dtype, name='bn1')(h))
      h = nn.max_pool(h, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
    else:
      raise ConfigError(f"ResNet stem must be 'cifar' or 'imagenet', got {self.stem!r}")
    for i, num_blocks in enumerate(self.stage_sizes):
      for j in range(num_blocks):
        stride = 2 if i > 0 and j == 0 else 1
        h = block_cls(self.width * 2**i, stride, self.dtype,
                      name=f'stage{i + 1}_block{j + 1}')(h, train)
      self.sow('intermediates', f'stage{i + 1}', h)
    return self.finish(global_avg_pool(h), return_features)


ResNet18 = functools.partial(ResNet, stage_sizes=(2, 2, 2, 2), block='basic')
ResNet34 = functools.partial(ResNet, stage_sizes=(3, 4, 6, 3), block='basic')
ResNet50 = functools.partial(ResNet, stage_sizes=(3, 4, 6, 3), block='bottleneck')
