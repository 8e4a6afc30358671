"""Pretrained weights from the PyTorch ecosystem, converted onto the jaxcv zoo.

A converter turns a local checkpoint file (never a download) into the variables of a zoo model.
Converters are plug-ins registered by KIND in `CONVERTERS` and named with the spec grammar
(docs/plugins.md), options included:

    torchvision_resnet:/ckpt/resnet50-11ad3fa6.pth
    timm_vit(num_heads=6):/ckpt/vit_small_patch16_224.safetensors
    timm_vit(prefix="module.backbone."):/ckpt/dino_checkpoint.pth

Such a `KIND:PATH` works wherever `init_checkpoint` does (`jaxcv.checkpoint.load_pretrained`
converts it in memory), and `python -m jaxcv.pretrained.convert` writes it as a jaxcv checkpoint
once. See docs/pretrained.md for where each checkpoint comes from.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from typing import Any, Callable, Optional

from jaxcv import plugins, specs
from jaxcv.errors import ConfigError
from jaxcv.pretrained import files

log = logging.getLogger(__name__)

RECORD_FILE = 'pretrained.json'  # Written beside a converted checkpoint (jaxcv.pretrained.convert).

# KIND -> converter `fn(state_dict: {key: np.ndarray}, **options) -> Converted`.
CONVERTERS = plugins.Registry('pretrained converter', modules={
    'torchvision_resnet': 'jaxcv.pretrained.resnet',
    'timm_vit': 'jaxcv.pretrained.vit',
    'diffusers_autoencoder_kl': 'jaxcv.pretrained.diffusers',
    'diffusers_unet': 'jaxcv.pretrained.diffusers',
})


@dataclasses.dataclass
class Converted:
  """A converted checkpoint: which zoo model it fits, and that model's variables (numpy).

  `num_classes` is None when the checkpoint has no classification head (a self-supervised
  backbone): the task then starts a fresh one.
  """
  model: str
  model_kwargs: dict[str, Any]
  num_classes: Optional[int]
  params: dict
  model_state: dict
  image_size: Optional[int] = None  # The input side the weights fix (a ViT's positions).

  def describe(self) -> str:
    kwargs = ', '.join(f'{k}={v!r}' for k, v in self.model_kwargs.items())
    head = f'{self.num_classes} classes' if self.num_classes else 'no head'
    size = f', {self.image_size}x{self.image_size} inputs' if self.image_size else ''
    return f'model {self.model!r}' + (f' ({kwargs})' if kwargs else '') + f', {head}{size}'


def register(kind: str) -> Callable:
  """Decorator registering a converter under `kind`."""
  return CONVERTERS.register(kind)


def parse_source(text: str) -> Optional[tuple[specs.Spec, str]]:
  """(converter spec, file path) of 'KIND[(options)]:PATH', or None when `text` does not start
  with a known KIND (a plain path, e.g. a jaxcv run)."""
  try:
    parsed = specs.parse_prefixed(str(text), 'pretrained source')
  except ConfigError:
    return None
  if parsed is None or parsed[0].name not in CONVERTERS:
    return None
  return parsed


def convert_file(kind: str, path: str) -> Converted:
  """Converts the checkpoint file at `path` with the converter spec `kind` ('timm_vit',
  'timm_vit(num_heads=6)')."""
  spec = specs.parse(kind, 'pretrained converter')
  fn = CONVERTERS[spec.name]
  options = specs.bind(spec, specs.parameters(fn, skip=1))
  converted = fn(files.read_state_dict(path), **options)
  log.info('converted %s (%s): %s', path, spec.text, converted.describe())
  return converted


def convert_source(source: str) -> Converted:
  """Converts 'KIND[(options)]:PATH'."""
  parsed = parse_source(source)
  if parsed is None:
    raise ConfigError(f'{source!r} is not KIND:PATH with a known KIND; known: '
                      f'{", ".join(CONVERTERS.names())}')
  spec, path = parsed
  return convert_file(spec.text, path)


def converted_record(path: str) -> Optional[dict]:
  """What `python -m jaxcv.pretrained.convert` recorded in the folder `path` (pretrained.json),
  shaped like a run config's model section: {'model': {'name', 'kwargs'}, 'num_classes', ...};
  None when `path` is not such a folder."""
  record = os.path.join(os.path.expanduser(str(path)), RECORD_FILE)
  if not os.path.isfile(record):
    return None
  with open(record) as f:
    fields = json.load(f)
  return {**fields, 'model': {'name': fields['model'], 'kwargs': fields['model_kwargs']}}


def raw_state(converted: Converted) -> dict:
  """The converted variables as the raw checkpoint state a task's `from_pretrained` takes."""
  return {'params': converted.params, 'model_state': converted.model_state}
