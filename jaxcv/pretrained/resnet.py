"""torchvision ResNets (and their CIFAR-stem variants) onto `jaxcv.models.resnet.ResNet`.

torchvision's layout: `conv1`/`bn1` stem, `layer{1..4}.{j}.conv{1,2[,3]}`/`bn*`,
`downsample.0`/`downsample.1` projection shortcuts and an `fc` head. The jaxcv ResNet has the same
convolutions (v1.5 bottleneck, stride on the 3x3), padding and BatchNorm epsilon, so converted
weights compute the same logits. Conv kernels go OIHW -> HWIO, linear weights [out, in] -> [in,
out], BatchNorm running mean/var become the `batch_stats` collection. kuangliu's CIFAR layout
(`shortcut.0/1`, `linear`) is read as well.
"""

from __future__ import annotations

import re

import numpy as np

from jaxcv.errors import ConfigError
from jaxcv.pretrained import Converted, register
from jaxcv.pretrained.files import Keys

# (block, stage sizes) -> zoo name; the stem adds '_imagenet'.
_ZOO = {('basic', (2, 2, 2, 2)): 'resnet18', ('basic', (3, 4, 6, 3)): 'resnet34',
        ('bottleneck', (3, 4, 6, 3)): 'resnet50'}


def conv_kernel(weight: np.ndarray) -> np.ndarray:
  """PyTorch [out, in, kh, kw] -> flax [kh, kw, in, out]."""
  return np.ascontiguousarray(weight.transpose(2, 3, 1, 0))


def dense(keys: Keys, name: str) -> dict:
  """PyTorch Linear `name` -> flax Dense {'kernel': [in, out], 'bias'}."""
  return {'kernel': np.ascontiguousarray(keys(f'{name}.weight').T), 'bias': keys(f'{name}.bias')}


def _batch_norm(keys: Keys, name: str, params: dict, stats: dict, target: str) -> None:
  params[target] = {'scale': keys(f'{name}.weight'), 'bias': keys(f'{name}.bias')}
  stats[target] = {'mean': keys(f'{name}.running_mean'), 'var': keys(f'{name}.running_var')}


def _conv_bn(keys: Keys, conv: str, bn: str, params: dict, stats: dict, target: str) -> None:
  params[f'{target}conv'] = {'kernel': conv_kernel(keys(f'{conv}.weight'))}
  _batch_norm(keys, bn, params, stats, f'{target}bn')


@register('torchvision_resnet')
def convert_resnet(state: dict, prefix: str = '') -> Converted:
  """A torchvision ResNet-18/34/50 state dict (ImageNet 7x7 stem, or a 3x3 CIFAR stem without
  max-pool). `prefix`: a wrapper's key prefix to strip ('module.', 'backbone.', ...)."""
  keys = Keys(state, prefix, 'torchvision_resnet', ignore=('num_batches_tracked',))
  stage_sizes = tuple(
      len({m.group(1) for k in keys.state if (m := re.match(rf'layer{i}\.(\d+)\.', k))})
      for i in range(1, 5))
  if 'conv1.weight' not in keys or not all(stage_sizes):
    raise ConfigError(f'torchvision_resnet: not a torchvision ResNet state dict (no conv1 or '
                      f'layer1..4); keys look like {sorted(keys.state)[:4]}')
  block = 'bottleneck' if 'layer1.0.conv3.weight' in keys else 'basic'
  stem_kernel = keys.state['conv1.weight'].shape[-1]
  stem = {7: 'imagenet', 3: 'cifar'}.get(stem_kernel)
  name = _ZOO.get((block, stage_sizes))
  width = keys.state['conv1.weight'].shape[0]
  if stem is None or name is None or width != 64:
    raise ConfigError(f'torchvision_resnet: a {block} ResNet with stages {stage_sizes}, width '
                      f'{width} and a {stem_kernel}x{stem_kernel} stem has no zoo model '
                      '(ResNet-18/34/50 with a 7x7 or 3x3 stem are supported)')
  params, stats = {}, {}
  params['conv1'] = {'kernel': conv_kernel(keys('conv1.weight'))}
  _batch_norm(keys, 'bn1', params, stats, 'bn1')
  convs = ('conv1', 'conv2', 'conv3') if block == 'bottleneck' else ('conv1', 'conv2')
  for i, size in enumerate(stage_sizes, start=1):
    for j in range(size):
      source, target = f'layer{i}.{j}', f'stage{i}_block{j + 1}'
      p, s = params.setdefault(target, {}), stats.setdefault(target, {})
      for c in convs:
        p[c] = {'kernel': conv_kernel(keys(f'{source}.{c}.weight'))}
        _batch_norm(keys, f'{source}.bn{c[-1]}', p, s, f'bn{c[-1]}')
      for shortcut in ('downsample', 'shortcut'):  # torchvision, kuangliu.
        if f'{source}.{shortcut}.0.weight' in keys:
          _conv_bn(keys, f'{source}.{shortcut}.0', f'{source}.{shortcut}.1', p, s, 'shortcut_')
  head = next((h for h in ('fc', 'linear') if f'{h}.weight' in keys), None)
  num_classes = None
  if head is not None:
    params['head'] = dense(keys, head)
    num_classes = int(params['head']['kernel'].shape[1])
  keys.check_all_used()
  return Converted(model=name + ('_imagenet' if stem == 'imagenet' else ''), model_kwargs={},
                   num_classes=num_classes, params=params, model_state={'batch_stats': stats})
