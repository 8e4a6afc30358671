"""diffusers' `AutoencoderKL` and `UNet2DConditionModel` (Stable Diffusion 1.5's VAE and UNet) onto
`jaxcv.models.autoencoder.KLAutoencoder` and `jaxcv.models.unet.UNet`.

The VAE:

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

The UNet: `time_embedding.linear_1/2`, `conv_in`, `down_blocks.{l}` (`resnets.{i}` with a
`time_emb_proj`, `attentions.{i}`: a Transformer2DModel with GroupNorm, `proj_in` (a 1x1 conv in
SD-1.5), one BasicTransformerBlock (`norm1`/`attn1` self-attention, `norm2`/`attn2`
cross-attention, `norm3`/`ff.net.0.proj` GEGLU and `ff.net.2`), `proj_out`), `downsamplers.0.conv`,
`mid_block`, `up_blocks` deepest first, `conv_norm_out`, `conv_out`: jaxcv's UNet is that design
(its docstring), under plain names.
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


def _norm(keys: Keys, name: str) -> dict:
  """GroupNorm or LayerNorm `name` -> flax {scale, bias}."""
  return {'scale': keys(f'{name}.weight'), 'bias': keys(f'{name}.bias')}


def _resnet(keys: Keys, name: str) -> dict:
  out = {'norm_0': _norm(keys, f'{name}.norm1'), 'conv_0': _conv(keys, f'{name}.conv1'),
         'norm_1': _norm(keys, f'{name}.norm2'), 'conv_1': _conv(keys, f'{name}.conv2')}
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
  return {'norm': _norm(keys, f'{name}.group_norm'), **out}


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
  params['enc_norm_out'] = _norm(keys, 'encoder.conv_norm_out')
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
  params['dec_norm_out'] = _norm(keys, 'decoder.conv_norm_out')
  params['dec_conv_out'] = _conv(keys, 'decoder.conv_out')
  keys.check_all_used()
  return Converted(model='kl_autoencoder', model_kwargs={
      'channels': int(channels), 'channel_mult': tuple(int(w // channels) for w in widths),
      'num_res_blocks': num_res_blocks,
      'latent_channels': int(params['quant_conv']['kernel'].shape[-1] // 2),
      'image_channels': int(params['enc_conv_in']['kernel'].shape[2]),
      'num_groups': int(num_groups)}, num_classes=None, params=params, model_state={})


def _dense(keys: Keys, name: str, bias: bool = True) -> dict:
  weight = keys(f'{name}.weight')
  weight = weight.reshape(weight.shape[:2])  # SD-1.5's proj_in/proj_out are 1x1 convs.
  out = {'kernel': np.ascontiguousarray(weight.T)}
  if bias:
    out['bias'] = keys(f'{name}.bias')
  return out


def _unet_resnet(keys: Keys, name: str) -> dict:
  return {**_resnet(keys, name), 'time_proj': _dense(keys, f'{name}.time_emb_proj')}


def _heads_attention(keys: Keys, name: str) -> dict:
  """diffusers' Attention with bias-free q/k/v onto jaxcv.models.unet.Attention."""
  return {'query': _dense(keys, f'{name}.to_q', bias=False),
          'key': _dense(keys, f'{name}.to_k', bias=False),
          'value': _dense(keys, f'{name}.to_v', bias=False),
          'out': _dense(keys, f'{name}.to_out.0')}


def _spatial_transformer(keys: Keys, name: str) -> dict:
  block = f'{name}.transformer_blocks.0'
  out = {'norm_self': _norm(keys, f'{block}.norm1'),
         'self_attn': _heads_attention(keys, f'{block}.attn1'),
         'norm_ff': _norm(keys, f'{block}.norm3'),
         'ff': {'proj': _dense(keys, f'{block}.ff.net.0.proj'),
                'out': _dense(keys, f'{block}.ff.net.2')}}
  if f'{block}.attn2.to_q.weight' in keys:
    out['norm_cross'] = _norm(keys, f'{block}.norm2')
    out['cross_attn'] = _heads_attention(keys, f'{block}.attn2')
  return {'norm': _norm(keys, f'{name}.norm'), 'proj_in': _dense(keys, f'{name}.proj_in'),
          'block': out, 'proj_out': _dense(keys, f'{name}.proj_out')}


@register('diffusers_unet')
def convert_unet(state: dict, num_heads: int = 8, num_groups: int = 32,
                 prefix: str = '') -> Converted:
  """A diffusers UNet2DConditionModel state dict in SD-1.5's design (SD-1.5:
  `unet/diffusion_pytorch_model.safetensors`) onto `jaxcv.models.unet.UNet`. `num_heads`:
  attention heads at every level (SD-1.5: 8, its config's `attention_head_dim`); `num_groups`:
  GroupNorm groups; `prefix`: a wrapper's key prefix to strip."""
  keys = Keys(state, prefix, 'diffusers_unet')
  if 'conv_in.weight' not in keys or 'time_embedding.linear_1.weight' not in keys:
    raise ConfigError('diffusers_unet: not a diffusers UNet2DConditionModel state dict (no '
                      f'conv_in / time_embedding); keys look like {sorted(keys.state)[:4]}')
  levels = _count(keys, r'down_blocks\.(\d+)\.')
  num_res_blocks = _count(keys, r'down_blocks\.0\.resnets\.(\d+)\.')
  widths = [keys.state[f'down_blocks.{i}.resnets.0.conv1.weight'].shape[0] for i in range(levels)]
  base = widths[0]
  attention_levels = tuple(i for i in range(levels) if f'down_blocks.{i}.attentions.0.norm.weight'
                           in keys)
  cross = 'mid_block.attentions.0.transformer_blocks.0.attn2.to_k.weight'
  context_dim = int(keys.state[cross].shape[1]) if cross in keys else None
  params = {'time_embed_0': _dense(keys, 'time_embedding.linear_1'),
            'time_embed_1': _dense(keys, 'time_embedding.linear_2'),
            'conv_in': _conv(keys, 'conv_in')}
  for level in range(levels):
    block = f'down_blocks.{level}'
    for i in range(num_res_blocks):
      params[f'down_{level}_res_{i}'] = _unet_resnet(keys, f'{block}.resnets.{i}')
      if level in attention_levels:
        params[f'down_{level}_attn_{i}'] = _spatial_transformer(keys, f'{block}.attentions.{i}')
    if level < levels - 1:
      params[f'down_{level}_downsample'] = {'conv': _conv(keys, f'{block}.downsamplers.0.conv')}
  params['mid_res_0'] = _unet_resnet(keys, 'mid_block.resnets.0')
  params['mid_attn'] = _spatial_transformer(keys, 'mid_block.attentions.0')
  params['mid_res_1'] = _unet_resnet(keys, 'mid_block.resnets.1')
  for i in range(levels):  # up_blocks[0] is the deepest level.
    level, block = levels - 1 - i, f'up_blocks.{i}'
    for j in range(num_res_blocks + 1):
      params[f'up_{level}_res_{j}'] = _unet_resnet(keys, f'{block}.resnets.{j}')
      if level in attention_levels:
        params[f'up_{level}_attn_{j}'] = _spatial_transformer(keys, f'{block}.attentions.{j}')
    if level > 0:
      params[f'up_{level}_upsample'] = {'conv': _conv(keys, f'{block}.upsamplers.0.conv')}
  params['norm_out'] = _norm(keys, 'conv_norm_out')
  params['conv_out'] = _conv(keys, 'conv_out')
  keys.check_all_used()
  if any(w % base for w in widths):
    raise ConfigError(f'diffusers_unet: level widths {widths} are not multiples of the first')
  return Converted(model='unet', model_kwargs={
      'base_width': int(base), 'channel_mult': tuple(int(w // base) for w in widths),
      'num_res_blocks': num_res_blocks, 'attention_levels': attention_levels,
      'num_heads': int(num_heads), 'context_dim': context_dim,
      'in_channels': int(params['conv_in']['kernel'].shape[2]),
      'out_channels': int(params['conv_out']['kernel'].shape[3]), 'num_groups': int(num_groups)},
                   num_classes=None, params=params, model_state={})
