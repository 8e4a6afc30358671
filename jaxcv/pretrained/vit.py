"""timm `VisionTransformer` (and DINO's, which saves the same keys without a head) onto
`jaxcv.models.vit.ViT`.

timm's layout: `patch_embed.proj` (a strided conv), `cls_token`, `pos_embed` (class token
included), pre-norm `blocks.{i}` with `norm1`, `attn.qkv` (one Linear, output ordered
[q|k|v] x heads x head_dim), `attn.proj`, `norm2`, `mlp.fc1`/`fc2` (exact GELU), then `norm` and
`head` on the class token; LayerNorm eps 1e-6. The jaxcv ViT is that network; the fused qkv is
split into flax's per-head query/key/value kernels [dim, heads, head_dim].
"""

from __future__ import annotations

import re
from typing import Optional

import numpy as np

from jaxcv.errors import ConfigError
from jaxcv.pretrained import Converted, register
from jaxcv.pretrained.files import Keys
from jaxcv.pretrained.resnet import conv_kernel, dense


def _layer_norm(keys: Keys, name: str) -> dict:
  return {'scale': keys(f'{name}.weight'), 'bias': keys(f'{name}.bias')}


def _attention(keys: Keys, name: str, dim: int, num_heads: int) -> dict:
  head_dim = dim // num_heads
  qkv_w = keys(f'{name}.qkv.weight').reshape(3, num_heads, head_dim, dim)
  qkv_b = keys(f'{name}.qkv.bias').reshape(3, num_heads, head_dim)
  out = {part: {'kernel': np.ascontiguousarray(qkv_w[i].transpose(2, 0, 1)), 'bias': qkv_b[i]}
         for i, part in enumerate(('query', 'key', 'value'))}
  out['out'] = {'kernel': np.ascontiguousarray(
      keys(f'{name}.proj.weight').T.reshape(num_heads, head_dim, dim)),
                'bias': keys(f'{name}.proj.bias')}
  return out


@register('timm_vit')
def convert_vit(state: dict, num_heads: Optional[int] = None, prefix: str = '') -> Converted:
  """A timm / DINO ViT state dict. `num_heads`: attention heads (not recorded in the weights;
  default dim // 64, as in ViT-Ti/S/B/L); `prefix`: a wrapper's key prefix to strip (DINO's
  training checkpoints: 'module.backbone.' or 'backbone.')."""
  keys = Keys(state, prefix, 'timm_vit')
  if 'patch_embed.proj.weight' not in keys or 'cls_token' not in keys:
    raise ConfigError('timm_vit: not a timm ViT state dict with a class token (no '
                      f'patch_embed.proj.weight / cls_token); keys look like '
                      f'{sorted(keys.state)[:4]}')
  patch = keys('patch_embed.proj.weight')
  dim, patch_size = patch.shape[0], patch.shape[-1]
  depth = len({m.group(1) for k in keys.state if (m := re.match(r'blocks\.(\d+)\.', k))})
  num_heads = num_heads or max(dim // 64, 1)
  if dim % num_heads:
    raise ConfigError(f'timm_vit: num_heads={num_heads} does not divide the width {dim}')
  mlp_dim = keys.state['blocks.0.mlp.fc1.weight'].shape[0]
  params = {'patch_embed': {'kernel': conv_kernel(patch), 'bias': keys('patch_embed.proj.bias')},
            'cls_token': keys('cls_token'), 'pos_embed': keys('pos_embed'),
            'norm': _layer_norm(keys, 'norm')}
  for i in range(depth):
    block = f'blocks.{i}'
    params[f'encoder{i + 1}'] = {
        'norm1': _layer_norm(keys, f'{block}.norm1'),
        'attn': _attention(keys, f'{block}.attn', dim, num_heads),
        'norm2': _layer_norm(keys, f'{block}.norm2'),
        'mlp_fc1': dense(keys, f'{block}.mlp.fc1'),
        'mlp_fc2': dense(keys, f'{block}.mlp.fc2')}
  num_classes = None
  if 'head.weight' in keys:
    params['head'] = dense(keys, 'head')
    num_classes = int(params['head']['kernel'].shape[1])
  keys.check_all_used()
  tokens = params['pos_embed'].shape[1] - 1
  side = int(round(tokens**0.5))
  if side * side != tokens:
    raise ConfigError(f'timm_vit: pos_embed has {tokens} patch positions, not a square grid')
  return Converted(model='vit', model_kwargs={
      'patch_size': int(patch_size), 'dim': int(dim), 'depth': depth, 'num_heads': int(num_heads),
      'mlp_dim': int(mlp_dim)}, num_classes=num_classes, params=params, model_state={},
                   image_size=side * int(patch_size))
