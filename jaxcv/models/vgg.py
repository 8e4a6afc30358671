"""VGG with BatchNorm, CIFAR variant (kuangliu/pytorch-cifar `models/vgg.py`).

3x3 convs with bias, each followed by BatchNorm and ReLU, a 2x2 max-pool after every stage, and
one linear layer on the 512 channels left (no 4096-wide classifier as in the ImageNet VGG). At
32x32 the five pools leave 1x1, where the global average pool is the reference's flatten; other
sizes work too. VGG-16: 14,728,266 parameters with 10 classes, as the reference. COIN evaluates
it as one of its four architectures (docs/coin.md).
"""

from __future__ import annotations

import flax.linen as nn
import jax

from jaxcv.errors import ConfigError
from jaxcv.models.layers import Classifier, batch_norm, conv, global_avg_pool

# Channels of each conv, one tuple per stage (a max-pool ends each stage).
VGG16_STAGES = ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512))


class VGG(Classifier):
  """conv(bias)-BN-ReLU stages, each ended by a 2x2 max-pool, then a global average pool.

  Attributes:
    stages: conv widths per stage (default VGG-16's).

  Sows the pooled stage outputs as `intermediates/stage1`..`stage{len(stages)}`.
  """
  stages: tuple[tuple[int, ...], ...] = VGG16_STAGES

  @property
  def feature_dim(self) -> int:
    if not self.stages or not all(self.stages):
      raise ConfigError(f'VGG stages must be non-empty tuples of widths, got {self.stages!r}')
    return self.stages[-1][-1]

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool = False,
               return_features: bool = False):
    h = self.normalize(x)
    for i, widths in enumerate(self.stages):
      for j, channels in enumerate(widths):
        h = conv(channels, 3, dtype=self.dtype, use_bias=True, name=f'stage{i + 1}_conv{j + 1}')(h)
        h = nn.relu(batch_norm(train, dtype=self.dtype, name=f'stage{i + 1}_bn{j + 1}')(h))
      h = nn.max_pool(h, (2, 2), strides=(2, 2))
      self.sow('intermediates', f'stage{i + 1}', h)
    return self.finish(global_avg_pool(h), return_features)
