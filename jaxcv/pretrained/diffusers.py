"""diffusers' `AutoencoderKL` (Stable Diffusion's VAE) onto `jaxcv.models.autoencoder.KLAutoencoder`.

diffusers' layout: `encoder.conv_in`, `encoder.down_blocks.{i}.resnets.{j}` (`norm1`, `conv1`,
`norm2`, `conv2`, `conv_shortcut`) and `.downsamplers.0.conv` (stride 2 after a right/bottom
pad), `encoder.mid_block` (`resnets.0`, `attentions.0`, `resnets.1`), `encoder.conv_norm_out`,
`encoder.conv_out`, `quant_conv`, `post_quant_conv`, then the decoder mirrored with
`up_blocks.{i}` ordered deepest first and `upsamplers.0.conv` after nearest upsampling.
Attention is single-head with `to_q`/`to_k`/`to_v`/`to_out.0` (older files: `query`, `key`,
`value`, `proj_attn`, sometimes as 1x1 convs). GroupNorm eps 1e-6 in both.

diffusers' VAE takes and returns [-1, 1] images; jaxcv's takes and returns [0, 1] ones and maps
them inside, so the same weights give the same latents. SD's latent scale (0.18215) is applied
outside the VAE in both (jaxcv: `diffusion.latent_scale`).
"""

from __future__ import annotations

import re

import numpy as np

from jaxcv.errors import ConfigError
from jaxcv.pretrained import Converted, register
from jaxcv.pretrained.files import Keys
from jaxcv.pretrained.resnet import conv_kernel


def _conv(keys: Keys, name: str) -> dict:
  return {'kernel': conv_kernel(keys(f'{name}.weight')), 'bias': keys(f'{name}.bias')}


def _group_norm(keys: Keys, name: str) -> dict:
  return {'scale': keys(f'{name}.weight'), 'bias': keys(f'{name}.bias')}


def _resnet(keys: Keys, name: str) -> dict:
  out = {'norm_0': _group_norm(keys, f'{name}.norm1'), 'conv_0': _conv(keys, f'{name}.conv1'),
         'norm_1': _group_norm(keys, f'{name}.norm2'), 'conv_1': _conv(keys, f'{name}.conv2')}
  if f'{name}.conv_shortcut.weight' in keys:
    out['skip'] = _conv(keys, f'{name}.conv_shortcut')
  return out


def _linear(keys: Keys, name: str) -> dict:
  weight = keys(f'{name}.weight')
  weight = weight.reshape(weight.shape[:2])  # Old files keep q/k/v as 1x1 convs.
  return {'kernel': np.ascontiguousarray(weight.T), 'bias': keys(f'{name}.bias')}


def _attention(keys: Keys, name: str) -> dict:
  new = f'{name}.to_q.weight' in keys
  names = (('to_q', 'to_k', 'to_v', 'to_out.0') if new else
           ('query', 'key', 'value', 'proj_attn'))
  out = {target: _linear(keys, f'{name}.{source}')
         for target, source in zip(('query', 'key', 'value', 'out'), names)}
  return {'norm': _group_norm(keys, f'{name}.group_norm'), **out}


def _mid(keys: Keys, prefix: str, params: dict, side: str) -> None:
  params[f'{side}_mid_res_0'] = _resnet(keys, f'{prefix}.mid_block.resnets.0')
  params[f'{side}_mid_attn'] = _attention(keys, f'{prefix}.mid_block.attentions.0')
  params[f'{side}_mid_res_1'] = _resnet(keys, f'{prefix}.mid_block.resnets.1')


def _count(keys: Keys, pattern: str) -> int:
  return len({m.group(1) for k in keys.state if (m := re.match(pattern, k))})


@register('diffusers_autoencoder_kl')
def convert_autoencoder_kl(state: dict, num_groups: int = 32, prefix: str = '') -> Converted:
  """A diffusers AutoencoderKL state dict (SD-1.5: `vae/diffusion_pytorch_model.safetensors`).
  `num_groups`: GroupNorm groups (diffusers' norm_num_groups, 32 in SD); `prefix`: a wrapper's
  key prefix to strip."""
  keys = Keys(state, prefix, 'diffusers_autoencoder_kl')
  if 'encoder.conv_in.weight' not in keys or 'quant_conv.weight' not in keys:
    raise ConfigError('diffusers_autoencoder_kl: not a diffusers AutoencoderKL state dict (no '
                      f'encoder.conv_in / quant_conv); keys look like {sorted(keys.state)[:4]}')
  levels = _count(keys, r'encoder\.down_blocks\.(\d+)\.')
  num_res_blocks = _count(keys, r'encoder\.down_blocks\.0\.resnets\.(\d+)\.')
  widths = [keys.state[f'encoder.down_blocks.{i}.resnets.0.conv1.weight'].shape[0]
            for i in range(levels)]
  channels = widths[0]
  if any(w % channels for w in widths):
    raise ConfigError(f'diffusers_autoencoder_kl: level widths {widths} are not multiples of '
                      f'the first')
  params = {'enc_conv_in': _conv(keys, 'encoder.conv_in')}
  for level in range(levels):
    block = f'encoder.down_blocks.{level}'
    for i in range(num_res_blocks):
      params[f'enc_{level}_res_{i}'] = _resnet(keys, f'{block}.resnets.{i}')
    if level < levels - 1:
      params[f'enc_{level}_downsample'] = _conv(keys, f'{block}.downsamplers.0.conv')
  _mid(keys, 'encoder', params, 'enc')
  params['enc_norm_out'] = _group_norm(keys, 'encoder.conv_norm_out')
  params['enc_conv_out'] = _conv(keys, 'encoder.conv_out')
  params['quant_conv'] = _conv(keys, 'quant_conv')
  params['post_quant_conv'] = _conv(keys, 'post_quant_conv')
  params['dec_conv_in'] = _conv(keys, 'decoder.conv_in')
  _mid(keys, 'decoder', params, 'dec')
  for i in range(levels):  # up_blocks[0] is the deepest level.
    level, block = levels - 1 - i, f'decoder.up_blocks.{i}'
    for j in range(num_res_blocks + 1):
      params[f'dec_{level}_res_{j}'] = _resnet(keys, f'{block}.resnets.{j}')
    if level > 0:
      params[f'dec_{level}_upsample'] = _conv(keys, f'{block}.upsamplers.0.conv')
  params['dec_norm_out'] = _group_norm(keys, 'decoder.conv_norm_out')
  params['dec_conv_out'] = _conv(keys, 'decoder.conv_out')
  keys.check_all_used()
  return Converted(model='kl_autoencoder', model_kwargs={
      'channels': int(channels), 'channel_mult': tuple(int(w // channels) for w in widths),
      'num_res_blocks': num_res_blocks,
      'latent_channels': int(params['quant_conv']['kernel'].shape[-1] // 2),
      'image_channels': int(params['enc_conv_in']['kernel'].shape[2]),
      'num_groups': int(num_groups)}, num_classes=None, params=params, model_state={})
