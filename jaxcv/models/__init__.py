"""Classification model zoo (Flax linen) and the name -> model registry.

All models share the conventions of `layers.Classifier`: float [0, 1] NHWC
input normalised inside the model by `input_mean` / `input_std`;
`__call__(x, *, train=False, return_features=False)` returns float32 logits
or `(logits, features)`; a float32 `head` Dense maps features to logits (also
callable as `model.apply(variables, features, method='classify')`); per-stage
activations are sown into the `intermediates` collection.
"""

from __future__ import annotations

import dataclasses
import functools
import numbers
from typing import Any, Callable, Optional

import flax.linen as nn
import jax.numpy as jnp

from jaxcv import plugins
from jaxcv.errors import ConfigError
from jaxcv.models.airbench import AirbenchNet
from jaxcv.models.densenet import DenseNet
from jaxcv.models.layers import Classifier
from jaxcv.models.mobilenet import MobileNetV2
from jaxcv.models.resnet import ResNet, ResNet18, ResNet34, ResNet50
from jaxcv.models.small import MLP, MnistCNN, SmallCNN
from jaxcv.models.vgg import VGG
from jaxcv.models.vit import ViT, ViTSmall, ViTTiny
from jaxcv.models.wide_resnet import WRN16_4, WRN28_10, WRN34_10, WideResNet

# name -> (constructor, attributes the name fixes, overridable defaults); a paper's package adds
# its own with `register_model`, listed in the lazy index `modules` (jaxcv/plugins.py).
MODELS = plugins.Registry('model', entries={
    'resnet18': (ResNet18, {'stem': 'cifar'}, {}),
    'resnet34': (ResNet34, {'stem': 'cifar'}, {}),
    'resnet50': (ResNet50, {'stem': 'cifar'}, {}),
    'resnet18_imagenet': (ResNet18, {'stem': 'imagenet'}, {}),
    'resnet34_imagenet': (ResNet34, {'stem': 'imagenet'}, {}),
    'resnet50_imagenet': (ResNet50, {'stem': 'imagenet'}, {}),
    'resnet_tiny': (ResNet, {'stage_sizes': (1, 1, 1, 1), 'block': 'basic', 'stem': 'cifar'},
                    {'width': 16}),
    'wrn34_10': (WRN34_10, {}, {}),
    'wrn28_10': (WRN28_10, {}, {}),
    'wrn16_4': (WRN16_4, {}, {}),
    'vit': (ViT, {}, {}),  # Every size attribute settable (dim, depth, heads, patch).
    'vit_tiny': (ViTTiny, {}, {}),
    'vit_small': (ViTSmall, {}, {}),
    'small_cnn': (SmallCNN, {}, {}),
    'mlp': (MLP, {}, {}),
    'mnist_cnn': (MnistCNN, {'norm': 'group'}, {}),
    'mnist_cnn_bn': (MnistCNN, {'norm': 'batch'}, {}),
    'airbench94': (AirbenchNet, {}, {}),
    # CIFAR variants of kuangliu/pytorch-cifar (COIN's other three architectures).
    'vgg16': (VGG, {}, {}),
    'densenet121': (DenseNet, {}, {}),
    'mobilenetv2': (MobileNetV2, {}, {}),
}, modules={'polymnist_cnn': 'jaxcv.multimodal.models'})

MODEL_NAMES: list[str] = MODELS.names()


def register_model(name: str, fixed: Optional[dict[str, Any]] = None,
                   defaults: Optional[dict[str, Any]] = None):
  """Class decorator: `build_model(name, ...)` builds the class with the attributes `fixed`
  (not overridable) and `defaults` (overridable)."""
  def wrap(cls: Callable[..., Classifier]):
    MODELS.register(name, (cls, dict(fixed or {}), dict(defaults or {})))
    return cls
  return wrap


def _dtype(value: Any) -> Any:
  """Accepts 'float32' / 'bfloat16' from config files as well as jnp dtypes."""
  try:
    dtype = jnp.dtype(value)
  except TypeError as e:
    raise ConfigError(f'model dtype {value!r} is not a dtype') from e
  if dtype not in (jnp.float32, jnp.bfloat16):
    raise ConfigError(f'model dtype must be float32 or bfloat16, got {dtype}')
  return dtype


def build_model(name: str, num_classes: int, **kwargs: Any) -> nn.Module:
  """The registered model `name` with `num_classes` logits.

  `kwargs` set any attribute the name does not fix (dtype, input_mean,
  input_std, width, patch_size, dropout, ...); lists become tuples so the
  module stays hashable. Unknown names and keys raise `ConfigError`.
  """
  if not isinstance(num_classes, numbers.Integral) or num_classes < 1:
    raise ConfigError(f'num_classes must be a positive int, got {num_classes!r}')
  ctor, fixed, defaults = MODELS[name]
  cls = ctor.func if isinstance(ctor, functools.partial) else ctor
  fixed = {**getattr(ctor, 'keywords', {}), **fixed}
  settable = {f.name for f in dataclasses.fields(cls)} - {'parent', 'name', 'num_classes'}
  for key in kwargs:
    if key in fixed:
      raise ConfigError(f'model {name!r} fixes {key}={fixed[key]!r}; it cannot be overridden')
    if key not in settable:
      raise ConfigError(f'model {name!r} has no attribute {key!r}; it accepts: '
                        f'{", ".join(sorted(settable - set(fixed)))}')
  kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in kwargs.items()}
  if 'dtype' in kwargs:
    kwargs['dtype'] = _dtype(kwargs['dtype'])
  return cls(num_classes=int(num_classes), **fixed, **{**defaults, **kwargs})


__all__ = [
    'AirbenchNet', 'DenseNet', 'MLP', 'MODEL_NAMES', 'MnistCNN', 'MobileNetV2', 'Classifier',
    'ResNet', 'ResNet18', 'ResNet34', 'ResNet50', 'SmallCNN', 'VGG', 'ViT', 'ViTSmall', 'ViTTiny',
    'WRN16_4', 'WRN28_10', 'WRN34_10', 'WideResNet', 'build_model', 'register_model',
]
