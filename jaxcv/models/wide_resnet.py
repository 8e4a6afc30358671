"""Pre-activation WideResNet as used across the adversarial-robustness literature.

Mirrors `wrn.py` of the TRADES / AutoAttack model zoos (BN -> ReLU -> conv;
the projection shortcut reads the pre-activated input), so WRN-34-10 has the
familiar 46.16M parameters and robustness numbers are comparable.
"""

from __future__ import annotations

import functools
from typing import Any

import flax.linen as nn
import jax

from jaxcv.errors import ConfigError
from jaxcv.models.layers import Classifier, batch_norm, conv, global_avg_pool


class WideBlock(nn.Module):
  """BN-ReLU-conv3x3-BN-ReLU-(dropout)-conv3x3 with a residual add."""
  channels: int
  stride: int
  dropout: float
  dtype: Any

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    act = nn.relu(batch_norm(train, dtype=self.dtype, name='bn1')(x))
    if self.stride == 1 and x.shape[-1] == self.channels:
      shortcut = x
    else:
      shortcut = conv(self.channels, 1, self.stride, dtype=self.dtype,
                      name='shortcut_conv')(act)
    h = conv(self.channels, 3, self.stride, dtype=self.dtype, name='conv1')(act)
    h = nn.relu(batch_norm(train, dtype=self.dtype, name='bn2')(h))
    h = nn.Dropout(self.dropout, deterministic=not train)(h)
    h = conv(self.channels, 3, dtype=self.dtype, name='conv2')(h)
    return shortcut + h


class WideResNet(Classifier):
  """WRN-`depth`-`widen_factor`: three stages of (depth - 4) / 6 blocks.

  Attributes:
    depth: total depth; (depth - 4) must be divisible by 6.
    widen_factor: stage widths are (16, 32, 64) * widen_factor.
    dropout: dropout rate between the two convs of a block (needs a 'dropout'
      rng when training with a rate > 0).

  Sows unpooled block outputs as `intermediates/stage1`..`stage3`.
  """
  depth: int = 34
  widen_factor: int = 10
  dropout: float = 0.0

  @property
  def feature_dim(self) -> int:
    return 64 * self.widen_factor

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool = False,
               return_features: bool = False):
    if self.depth < 10 or (self.depth - 4) % 6:
      raise ConfigError(f'WideResNet depth must be 6n + 4 with n >= 1, got {self.depth}')
    blocks_per_stage = (self.depth - 4) // 6
    h = conv(16, 3, dtype=self.dtype, name='conv1')(self.normalize(x))
    for i in range(3):
      for j in range(blocks_per_stage):
        stride = 2 if i > 0 and j == 0 else 1
        h = WideBlock(16 * 2**i * self.widen_factor, stride, self.dropout,
                      self.dtype, name=f'stage{i + 1}_block{j + 1}')(h, train)
      self.sow('intermediates', f'stage{i + 1}', h)
    h = nn.relu(batch_norm(train, dtype=self.dtype, name='bn_final')(h))
    return self.finish(global_avg_pool(h), return_features)


WRN34_10 = functools.partial(WideResNet, depth=34, widen_factor=10)
WRN28_10 = functools.partial(WideResNet, depth=28, widen_factor=10)
WRN16_4 = functools.partial(WideResNet, depth=16, widen_factor=4)
