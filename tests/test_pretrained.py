"""PyTorch-ecosystem checkpoints converted onto the zoo compute what PyTorch computes.

The fixtures (scripts/make_pretrained_fixtures.py) hold real layouts (torchvision's resnet18 and
resnet50 with 10 classes, timm's ViT-S/16 and a tiny timm ViT, a head-less DINO-style ViT,
diffusers' AutoencoderKL and UNet2DConditionModel), an input and PyTorch's float32 outputs; the
weights are drawn from the fixture's seed (tests/pretrained_weights.py), written here as a
checkpoint file and converted without PyTorch.
"""

import functools
import json

import chex
import jax
import numpy as np
import pytest

from jaxcv import checkpoint as checkpoint_lib
from jaxcv import config as config_lib
from jaxcv import models, pretrained, train
from jaxcv.diffusion import conditioning
from jaxcv.errors import ConfigError, UserError
from jaxcv.models.autoencoder import KLAutoencoder
from jaxcv.models.unet import UNet
from jaxcv.pretrained import convert as convert_cli
from jaxcv.pretrained.files import PretrainedFileError
from jaxcv.tasks import diffusion as diffusion_task

from conftest import REPO_ROOT
from pretrained_weights import synthetic_state_dict

FIXTURES = REPO_ROOT / 'tests' / 'fixtures' / 'pretrained'
TINY = str(REPO_ROOT / 'tests' / 'configs' / 'tiny.py')
# Float32 on both sides, different summation orders: outputs agree to 1e-4 of their largest.
RELATIVE_TOLERANCE = 1e-4


def fixture(name):
  with open(FIXTURES / f'{name}.json') as f:
    meta = json.load(f)
  with np.load(FIXTURES / f'{name}.npz') as arrays:
    return meta, arrays['image'], arrays['outputs']


def write_weights(tmp_path, name, suffix='.npz'):
  """The fixture's state dict as a checkpoint file (npz: numpy alone; or safetensors)."""
  meta, _, _ = fixture(name)
  state = synthetic_state_dict(meta['layout'], meta['seed'])
  path = tmp_path / f'{name}{suffix}'
  if suffix == '.safetensors':
    pytest.importorskip('safetensors.numpy').save_file(state, str(path))
  else:
    np.savez(path, **state)
  return str(path)


def network_outputs(converted, image):
  """Logits, or the features of a head-less checkpoint (a zero head stands in)."""
  model = models.build_model(converted.model, converted.num_classes or 1,
                             **converted.model_kwargs)
  params = dict(converted.params)
  if converted.num_classes is None:
    params['head'] = {'kernel': np.zeros((model.feature_dim, 1), np.float32),
                      'bias': np.zeros((1,), np.float32)}
  # Jitted: one compilation is cheaper than dispatching the network op by op.
  logits, features = jax.jit(functools.partial(model.apply, return_features=True))(
      {'params': params, **converted.model_state}, image)
  return np.asarray(logits if converted.num_classes else features)


@pytest.mark.parametrize('name,suffix,model,num_classes', [
    ('torchvision_resnet18', '.safetensors', 'resnet18_imagenet', 10),
    # The full-size layouts take a compilation of a large network each (10-20 s on 2 cores).
    pytest.param('torchvision_resnet50', '.npz', 'resnet50_imagenet', 10, marks=pytest.mark.slow),
    ('timm_vit_tiny', '.npz', 'vit', 10),
    ('dino_vit_tiny', '.npz', 'vit', None),
    pytest.param('timm_vit_small_patch16_224', '.npz', 'vit', 10, marks=pytest.mark.slow),
])
def test_converted_network_computes_pytorch_outputs(tmp_path, name, suffix, model, num_classes):
  meta, image, expected = fixture(name)
  converted = pretrained.convert_file(meta['kind'], write_weights(tmp_path, name, suffix))
  assert (converted.model, converted.num_classes) == (model, num_classes)
  outputs = network_outputs(converted, image)
  assert outputs.shape == expected.shape
  np.testing.assert_allclose(outputs, expected, rtol=0,
                             atol=RELATIVE_TOLERANCE * np.abs(expected).max())


def test_converted_autoencoder_computes_diffusers_latents_and_images(tmp_path):
  """diffusers' AutoencoderKL (SD's VAE design, two narrow levels): same posterior, same decoded
  image (diffusers' [-1, 1] mapped to jaxcv's [0, 1])."""
  name = 'diffusers_autoencoder_kl'
  meta, image, mean = fixture(name)
  converted = pretrained.convert_file(meta['kind'], write_weights(tmp_path, name))
  assert converted.model_kwargs == {'channels': 32, 'channel_mult': (1, 2), 'num_res_blocks': 1,
                                    'latent_channels': 4, 'image_channels': 3, 'num_groups': 32}
  model = KLAutoencoder(**converted.model_kwargs)

  @jax.jit
  def encode_decode(variables, image):
    mean, logvar = model.apply(variables, image, method='encode')
    return mean, logvar, model.apply(variables, mean, method='decode')

  ours_mean, ours_logvar, decoded = encode_decode({'params': converted.params}, image)
  with np.load(FIXTURES / f'{name}.npz') as arrays:
    for ours, theirs in ((ours_mean, mean), (ours_logvar, arrays['logvar']),
                         (decoded, arrays['decoded'])):
      np.testing.assert_allclose(ours, theirs, rtol=0,
                                 atol=RELATIVE_TOLERANCE * np.abs(theirs).max())


def test_diffusion_autoencoder_from_a_vae_file_or_its_converted_folder(tmp_path):
  """diffusion.autoencoder_checkpoint takes KIND:PATH or a converted folder, attributes included
  (not only SD's, which are KLAutoencoder's defaults)."""
  source = f'diffusers_autoencoder_kl:{write_weights(tmp_path, "diffusers_autoencoder_kl")}'
  kind, path = source.split(':', 1)
  assert convert_cli.main(['--kind', kind, '--input', path, '--output', str(tmp_path / 'vae')]) == 0
  converted = pretrained.convert_source(source)
  for checkpoint in (source, str(tmp_path / 'vae')):
    load = diffusion_task._load_autoencoder  # pylint: disable=protected-access
    module, params = load(checkpoint)
    assert (module.channels, module.channel_mult, module.num_res_blocks) == (32, (1, 2), 1)
    chex.assert_trees_all_close(params, converted.params)


def test_converted_unet_computes_diffusers_noise_prediction(tmp_path):
  """diffusers' UNet2DConditionModel in SD-1.5's design (cross-attention and plain levels, mid
  block, GEGLU transformer blocks, 1x1-conv projections) at widths 32/64."""
  name = 'diffusers_unet'
  meta, latents, expected = fixture(name)
  converted = pretrained.convert_file(meta['kind'], write_weights(tmp_path, name))
  assert converted.model_kwargs == {
      'base_width': 32, 'channel_mult': (1, 2), 'num_res_blocks': 1, 'attention_levels': (0,),
      'num_heads': 4, 'context_dim': 16, 'in_channels': 4, 'out_channels': 4, 'num_groups': 32}
  with np.load(FIXTURES / f'{name}.npz') as arrays:
    outputs = jax.jit(UNet(**converted.model_kwargs).apply)(
        {'params': converted.params}, latents, arrays['timesteps'], arrays['context'])
  np.testing.assert_allclose(outputs, expected, rtol=0,
                             atol=RELATIVE_TOLERANCE * np.abs(expected).max())


def test_a_converted_unet_is_the_class_conditional_denoisers_unet(tmp_path):
  """The diffusion task puts bare UNet weights under its denoiser's `unet`; the class embedding
  keeps its initialisation."""
  converted = pretrained.convert_source(
      f'diffusers_unet(num_heads=4):{write_weights(tmp_path, "diffusers_unet")}')
  denoiser = conditioning.ConditionalDenoiser(UNet(**converted.model_kwargs), num_classes=3,
                                              context_dim=16, context_len=2)
  params = jax.eval_shape(denoiser.init, jax.random.key(0), np.zeros((1, 8, 8, 4)),
                          np.zeros((1,)), np.zeros((1,), np.int32))['params']
  params = jax.tree.map(lambda x: np.full(x.shape, 7.0, x.dtype), params)
  # from_pretrained reads no settings: a bare instance suffices.
  task = diffusion_task.DiffusionTask.__new__(diffusion_task.DiffusionTask)
  started, _ = task.from_pretrained(params, {}, pretrained.raw_state(converted))
  chex.assert_trees_all_close(started['unet'], converted.params)
  chex.assert_trees_all_close(started['class_embedding'], params['class_embedding'])


def test_vit_small_is_timm_vit_small_patch16():
  meta, _, _ = fixture('timm_vit_small_patch16_224')
  state = synthetic_state_dict(meta['layout'], meta['seed'])
  converted = pretrained.CONVERTERS['timm_vit'](state)  # Heads from the width: 384 // 64.
  assert converted.model_kwargs == {'patch_size': 16, 'dim': 384, 'depth': 12, 'num_heads': 6,
                                    'mlp_dim': 1536}
  assert converted.image_size == 224


def test_sources_and_their_errors(tmp_path):
  path = write_weights(tmp_path, 'torchvision_resnet18')
  spec, rest = pretrained.parse_source(f'torchvision_resnet:{path}')
  assert (spec.name, rest) == ('torchvision_resnet', path)
  assert pretrained.parse_source('timm_vit(num_heads=3):/x.npz')[0].kwargs == {'num_heads': 3}
  for plain in (path, 'runs/resnet', 'C:/runs/x', 'unknown_kind:/x.npz'):
    assert pretrained.parse_source(plain) is None
  with pytest.raises(ConfigError, match='not a timm ViT'):
    pretrained.convert_file('timm_vit', path)
  with pytest.raises(ConfigError, match='no tensor starts with prefix'):
    pretrained.convert_file('torchvision_resnet(prefix="module.")', path)
  with pytest.raises(ConfigError, match="no argument 'heads'; it takes prefix"):
    pretrained.convert_file('torchvision_resnet(heads=3)', path)
  with pytest.raises(PretrainedFileError, match='not found'):
    pretrained.convert_file('torchvision_resnet', str(tmp_path / 'missing.safetensors'))
  state = dict(np.load(path))
  np.savez(tmp_path / 'extra.npz', **state, **{'fc2.weight': np.zeros((2, 2), np.float32)})
  with pytest.raises(ConfigError, match='no place in the jaxcv model.*fc2.weight'):
    pretrained.convert_file('torchvision_resnet', str(tmp_path / 'extra.npz'))
  del state['layer2.0.bn1.running_var']
  np.savez(tmp_path / 'missing_key.npz', **state)
  with pytest.raises(ConfigError, match="no tensor 'layer2.0.bn1.running_var'"):
    pretrained.convert_file('torchvision_resnet', str(tmp_path / 'missing_key.npz'))


def test_pytorch_files_need_pytorch_or_are_read_with_it(tmp_path):
  meta, image, expected = fixture('timm_vit_tiny')
  state = synthetic_state_dict(meta['layout'], meta['seed'])
  path = tmp_path / 'vit.pth'
  try:
    import torch  # pylint: disable=import-outside-toplevel
  except ImportError:
    path.write_bytes(b'not read')
    with pytest.raises(PretrainedFileError, match='needs PyTorch'):
      pretrained.convert_file('timm_vit', str(path))
    pytest.skip('PyTorch is not installed: only its absence is checked')
  # DINO's training checkpoints wrap the network: {'teacher': {'backbone.<key>': ...}}.
  torch.save({'teacher': {f'backbone.{k}': torch.from_numpy(v) for k, v in state.items()}},
             path)
  converted = pretrained.convert_file('timm_vit(num_heads=3,prefix="backbone.")', str(path))
  np.testing.assert_allclose(network_outputs(converted, image), expected, rtol=0,
                             atol=RELATIVE_TOLERANCE * np.abs(expected).max())


def test_init_checkpoint_converts_and_gives_a_fresh_head(tmp_path):
  """KIND:PATH as init_checkpoint: a 10-class timm ViT starts a 4-class run, backbone kept."""
  source = f'timm_vit(num_heads=3):{write_weights(tmp_path, "timm_vit_tiny")}'
  config = config_lib.load(f'{TINY}:model=vit', [
      'data.name=synthetic:n=64,size=32,classes=4', 'data.augment=', 'total_steps=1',
      'schedule.lr=0.0', f'init_checkpoint={source}'])  # One step that changes nothing.
  with config.unlocked():
    config.model.kwargs.update(dict(patch_size=8, dim=48, depth=2, num_heads=3, mlp_dim=192))
  train.run(config, str(tmp_path / 'run'))
  started, _ = checkpoint_lib.load_pretrained(str(tmp_path / 'run'))
  converted = pretrained.convert_source(source)
  assert started['params']['head']['kernel'].shape == (48, 4)
  chex.assert_trees_all_close({k: v for k, v in started['params'].items() if k != 'head'},
                              {k: v for k, v in converted.params.items() if k != 'head'})


def test_command_line_writes_a_checkpoint_init_checkpoint_reads(tmp_path, capsys):
  path = write_weights(tmp_path, 'torchvision_resnet18')
  out = tmp_path / 'converted'
  args = ['--kind', 'torchvision_resnet', '--input', path, '--output', str(out)]
  assert convert_cli.main(args) == 0
  assert f'init_checkpoint={out}' in capsys.readouterr().out
  saved, step = checkpoint_lib.load_pretrained(str(out))
  in_memory, _ = checkpoint_lib.load_pretrained(f'torchvision_resnet:{path}')
  assert step == 0
  chex.assert_trees_all_close(saved, in_memory)
  assert json.loads((out / 'pretrained.json').read_text())['model'] == 'resnet18_imagenet'
  assert convert_cli.main(args) == 2  # Never over an existing checkpoint.
  assert 'already holds checkpoints' in capsys.readouterr().err
  assert convert_cli.main(['--kind', 'nope', '--input', path, '--output', str(tmp_path)]) == 2
  assert issubclass(PretrainedFileError, UserError)
