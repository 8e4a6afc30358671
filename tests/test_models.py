"""Tests for the model zoo: reference parameter counts, shapes and the shared conventions.

Big models are only traced (`jax.eval_shape`); numerical checks use tiny configs of each
architecture so the file runs in well under a minute on two CPU cores.
"""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import AxisType, NamedSharding, PartitionSpec

from jaxcv import models
from jaxcv.errors import ConfigError
from jaxcv.models import MODEL_NAMES, ResNet, ViT, WideResNet, build_model

IMAGENET_STEM = ('resnet18_imagenet', 'resnet34_imagenet', 'resnet50_imagenet')
FEATURE_DIMS = {
    'resnet18': 512, 'resnet34': 512, 'resnet50': 2048,
    'resnet18_imagenet': 512, 'resnet34_imagenet': 512, 'resnet50_imagenet': 2048,
    'resnet_tiny': 128, 'wrn34_10': 640, 'wrn28_10': 640, 'wrn16_4': 256,
    'vit_tiny': 192, 'vit_small': 384, 'small_cnn': 64, 'mlp': 256, 'airbench94': 256,
    'mnist_cnn': 128, 'mnist_cnn_bn': 128, 'polymnist_cnn': 128, 'vit': 192,
    'vgg16': 512, 'densenet121': 1024, 'mobilenetv2': 1280,
}

# Reference counts: kuangliu/pytorch-cifar (CIFAR stem), torchvision (ImageNet stem),
# TRADES/AutoAttack wrn.py, timm vit_tiny_patch16_224, DomainBed networks.MNIST_CNN (with 3 input
# channels here; 371,850 with RotatedMNIST's 1, checked in test_domain_generalization.py).
# VGG16 / DenseNet121 / MobileNetV2: kuangliu/pytorch-cifar's models/vgg.py, densenet.py and
# mobilenetv2.py (the CIFAR variants COIN trains), counted layer by layer from those modules.
PARAM_COUNTS = [
    ('resnet18', 10, {}, 32, 11_173_962),
    ('resnet34', 10, {}, 32, 21_282_122),
    ('resnet50', 10, {}, 32, 23_520_842),
    ('resnet18_imagenet', 1000, {}, 224, 11_689_512),
    ('resnet50_imagenet', 1000, {}, 224, 25_557_032),
    ('wrn34_10', 10, {}, 32, 46_160_474),
    ('wrn28_10', 10, {}, 32, 36_479_194),
    ('wrn16_4', 10, {}, 32, 2_748_890),
    ('vit_tiny', 1000, {'patch_size': 16}, 224, 5_717_416),
    ('mnist_cnn', 10, {}, 32, 373_002),
    ('vgg16', 10, {}, 32, 14_728_266),
    ('densenet121', 10, {}, 32, 6_956_298),
    ('mobilenetv2', 10, {}, 32, 2_296_922),
]


def _key(seed):
  # RBG keys: initialisers compile several times faster on CPU than with threefry.
  return jax.random.key(seed, impl='rbg')


def _abstract_variables(model, size):
  x = jax.ShapeDtypeStruct((2, size, size, 3), jnp.float32)
  return jax.eval_shape(model.init, _key(0), x), x


def _num_params(params) -> int:
  return sum(leaf.size for leaf in jax.tree.leaves(params))


@pytest.mark.parametrize('name,num_classes,kwargs,size,expected', PARAM_COUNTS,
                         ids=[c[0] for c in PARAM_COUNTS])
def test_parameter_counts_match_reference_implementations(name, num_classes, kwargs, size,
                                                           expected):
  variables, _ = _abstract_variables(build_model(name, num_classes, **kwargs), size)
  assert _num_params(variables['params']) == expected


@pytest.mark.parametrize('name', MODEL_NAMES)
def test_output_shapes(name):
  model = build_model(name, 10)
  assert model.feature_dim == FEATURE_DIMS[name]
  for size in (32, 64) if name in IMAGENET_STEM else (32,):
    variables, x = _abstract_variables(model, size)
    logits, features = jax.eval_shape(
        lambda v, x: model.apply(v, x, return_features=True), variables, x)
    assert logits.shape == (2, 10) and logits.dtype == jnp.float32
    assert features.shape == (2, FEATURE_DIMS[name]) and features.dtype == jnp.float32
    assert variables['params']['head']['kernel'].shape == (FEATURE_DIMS[name], 10)
    # mnist_cnn: GroupNorm (DomainBed's); polymnist_cnn: none (the official PolyMNIST net).
    has_bn = name == 'mnist_cnn_bn' or not name.startswith(('vit', 'mlp', 'mnist_cnn',
                                                            'polymnist_cnn'))
    assert ('batch_stats' in variables) == has_bn


# Tiny instances of every architecture for numerical checks.
TINY = {
    'resnet_basic': lambda **kw: build_model('resnet_tiny', 10, width=8, **kw),
    'resnet_bottleneck_imagenet': lambda **kw: ResNet(
        num_classes=10, stage_sizes=(1, 1), block='bottleneck', stem='imagenet', width=8, **kw),
    'wrn': lambda **kw: WideResNet(num_classes=10, depth=10, widen_factor=2, **kw),
    'vit': lambda **kw: ViT(num_classes=10, patch_size=4, dim=32, depth=2, num_heads=2,
                            mlp_dim=64, **kw),
    'small_cnn': lambda **kw: build_model('small_cnn', 10, width=8, **kw),
    'mlp': lambda **kw: build_model('mlp', 10, hidden=(32, 16), **kw),
    'vgg': lambda **kw: build_model('vgg16', 10, stages=((8,), (8, 16)), **kw),
    'densenet': lambda **kw: build_model('densenet121', 10, block_sizes=(1, 2), growth_rate=4,
                                         **kw),
    'mobilenetv2': lambda **kw: build_model('mobilenetv2', 10, stem_width=8, head_width=16,
                                            stages=((1, 8, 1, 1), (2, 12, 2, 2)), **kw),
}
EXPECTED_INTERMEDIATES = {
    'resnet_basic': ['stage1', 'stage2', 'stage3', 'stage4'],
    'resnet_bottleneck_imagenet': ['stage1', 'stage2'],
    'wrn': ['stage1', 'stage2', 'stage3'],
    'vit': ['block1', 'block2'],
    'small_cnn': ['stage1', 'stage2'],
    'mlp': ['stage1', 'stage2'],
    'vgg': ['stage1', 'stage2'],
    'densenet': ['stage1', 'stage2'],
    'mobilenetv2': ['stage1', 'stage2'],
}


def _images(n=4, size=16, seed=0):
  return jax.random.uniform(_key(seed), (n, size, size, 3))


@functools.cache
def _tiny_variables(name):
  return jax.jit(TINY[name]().init)(_key(1), _images())


@pytest.fixture(scope='module', params=sorted(TINY))
def tiny(request):
  """(name, constructor, fp32 variables, images)."""
  return request.param, TINY[request.param], _tiny_variables(request.param), _images()


def test_head_applied_to_features_gives_the_logits(tiny):
  _, make, variables, x = tiny
  model = make()
  logits, features = model.apply(variables, x, return_features=True)
  assert features.shape == (x.shape[0], model.feature_dim)
  np.testing.assert_array_equal(model.apply(variables, x), logits)
  np.testing.assert_array_equal(model.apply(variables, features, method='classify'), logits)
  head = nn.Dense(model.num_classes)
  np.testing.assert_array_equal(head.apply({'params': variables['params']['head']}, features),
                                logits)


def test_bfloat16_compute_keeps_float32_params_and_outputs(tiny):
  _, make, variables, x = tiny
  model16 = make(dtype=jnp.bfloat16)
  params16 = jax.eval_shape(model16.init, _key(1), x)['params']
  assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(params16))
  logits16, features16 = model16.apply(variables, x, return_features=True)
  assert logits16.dtype == jnp.float32 and features16.dtype == jnp.float32
  logits32 = make().apply(variables, x)
  scale = float(jnp.max(jnp.abs(logits32)))
  np.testing.assert_allclose(logits16, logits32, atol=0.05 * scale + 1e-2)


def test_train_mode_updates_batch_stats_and_eval_mode_does_not(tiny):
  name, make, variables, x = tiny
  model = make()
  if name in ('vit', 'mlp'):
    assert set(variables) == {'params'}
    return
  _, train_state = model.apply(variables, x, train=True, mutable=['batch_stats'])
  changed = jax.tree.map(lambda a, b: bool(jnp.any(a != b)), variables['batch_stats'],
                         train_state['batch_stats'])
  assert all(jax.tree.leaves(changed))
  _, eval_state = model.apply(variables, x, train=False, mutable=['batch_stats'])
  jax.tree.map(np.testing.assert_array_equal, variables['batch_stats'],
               eval_state['batch_stats'])


def test_batch_norm_uses_global_batch_statistics_when_the_batch_is_sharded():
  devices = jax.devices()
  mesh = jax.make_mesh((len(devices),), ('data',), axis_types=(AxisType.Auto,), devices=devices)
  model = TINY['small_cnn']()
  x = _images(n=2 * len(devices), size=8)
  variables = jax.jit(model.init)(_key(0), x)
  train = jax.jit(lambda v, x: model.apply(v, x, train=True, mutable=['batch_stats']))
  logits, state = train(variables, x)
  sharded_logits, sharded_state = train(
      variables, jax.device_put(x, NamedSharding(mesh, PartitionSpec('data'))))
  np.testing.assert_allclose(sharded_logits, logits, rtol=1e-5, atol=1e-6)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6),
               sharded_state, state)


def test_input_normalisation_happens_inside_the_model(tiny):
  _, make, variables, x = tiny
  mean = tuple(float(m) for m in x.mean(axis=(0, 1, 2)))
  std = tuple(float(s) for s in x.std(axis=(0, 1, 2)))
  plain = make()
  np.testing.assert_allclose(make(input_mean=mean).apply(variables, x),
                             plain.apply(variables, x - jnp.array(mean)), rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(make(input_mean=mean, input_std=std).apply(variables, x),
                             plain.apply(variables, (x - jnp.array(mean)) / jnp.array(std)),
                             rtol=1e-5, atol=1e-5)
  assert not np.allclose(make(input_mean=mean).apply(variables, x), plain.apply(variables, x))


def test_intermediates_are_sown(tiny):
  name, make, variables, x = tiny
  _, state = make().apply(variables, x, mutable=['intermediates'])
  sown = state['intermediates']
  assert list(sown) == EXPECTED_INTERMEDIATES[name]
  assert all(len(v) == 1 and v[0].shape[0] == x.shape[0] for v in sown.values())


def test_init_follows_torchvision():
  params = _tiny_variables('resnet_basic')['params']
  kernel = params['stage4_block1']['conv2']['kernel']  # 3x3, 64 -> 64
  np.testing.assert_allclose(np.std(kernel), np.sqrt(2 / (9 * 64)), rtol=0.03)
  np.testing.assert_array_equal(params['bn1']['scale'], 1.0)
  np.testing.assert_array_equal(params['bn1']['bias'], 0.0)
  bound = 64**-0.5
  assert np.all(np.abs(params['head']['kernel']) <= bound)
  assert np.all(np.abs(params['head']['bias']) <= bound)


def test_vit_dropout_needs_rng_only_in_training():
  model = TINY['vit'](dropout=0.5)
  x = _images()
  variables = jax.jit(model.init)(_key(0), x)
  np.testing.assert_array_equal(model.apply(variables, x), model.apply(variables, x))
  a = model.apply(variables, x, train=True, rngs={'dropout': _key(1)})
  b = model.apply(variables, x, train=True, rngs={'dropout': _key(2)})
  assert not np.allclose(a, b)


def test_registry_names():
  assert MODEL_NAMES == sorted(MODEL_NAMES)
  assert set(MODEL_NAMES) == set(FEATURE_DIMS)
  assert isinstance(build_model('resnet50_imagenet', 5), ResNet)
  assert isinstance(build_model('wrn34_10', 5), WideResNet)
  assert isinstance(build_model('vit_small', 5), ViT)
  assert set(models.__all__) >= {'ResNet', 'WideResNet', 'ViT', 'build_model', 'MODEL_NAMES'}


def test_registry_passes_kwargs_through():
  model = build_model('resnet_tiny', 7, width=32, dtype='bfloat16', input_mean=[0.5, 0.5, 0.5])
  assert (model.num_classes, model.width, model.dtype) == (7, 32, jnp.bfloat16)
  assert model.input_mean == (0.5, 0.5, 0.5)
  assert build_model('resnet_tiny', 7).width == 16
  assert build_model('vit_tiny', 10, patch_size=2).patch_size == 2


def test_unknown_name_lists_the_known_ones():
  with pytest.raises(ConfigError, match='resnet18.*wrn34_10'):
    build_model('resnet19', 10)


@pytest.mark.parametrize('kwargs,match', [
    ({'widht': 8}, 'widht'),
    ({'stage_sizes': (1, 1, 1, 1)}, 'stage_sizes'),
    ({'dtype': 'int8'}, 'dtype'),
])
def test_bad_kwargs_raise_config_error(kwargs, match):
  with pytest.raises(ConfigError, match=match):
    build_model('resnet18', 10, **kwargs)


def test_bad_values_raise_config_error():
  with pytest.raises(ConfigError, match='num_classes'):
    build_model('mlp', 0)
  with pytest.raises(ConfigError, match='input_mean'):
    build_model('mlp', 10, input_mean=(0.5,)).init(_key(0), _images(1, 4))
  with pytest.raises(ConfigError, match='patch_size'):
    build_model('vit_tiny', 10, patch_size=5).init(_key(0), _images(1, 8))
  with pytest.raises(ConfigError, match='depth'):
    WideResNet(num_classes=10, depth=12).init(_key(0), _images(1, 8))
