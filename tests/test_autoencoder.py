"""The KL autoencoder (SD's VAE layout) and the 'autoencoder' training task."""

import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxcv import config as config_lib
from jaxcv import train
from jaxcv.data.dataset import DataInfo
from jaxcv.errors import ConfigError
from jaxcv.models.autoencoder import KLAutoencoder, kl_divergence
from jaxcv.tasks import build_task

from conftest import REPO_ROOT

CONFIG = str(REPO_ROOT / 'configs' / 'ldm_scaling' / 'autoencoder_cifar.py')


def _num_params(tree):
  return sum(math.prod(x.shape) for x in jax.tree.leaves(tree))


def _random_variables(model, x):
  """Random variables of the right shapes without compiling `init` (slow on CPU)."""
  abstract = jax.eval_shape(model.init, jax.random.key(0), x)
  rng = np.random.default_rng(0)
  return jax.tree.map(lambda s: jnp.asarray(0.1 * rng.standard_normal(s.shape), s.dtype),
                      abstract)


def test_sd_layout_has_the_sd_vae_parameter_count():
  # diffusers' AutoencoderKL for SD 1.x (128 channels, mult 1-2-4-4, 2 res blocks, 4 latents).
  abstract = jax.eval_shape(KLAutoencoder().init, jax.random.key(0),
                            jax.ShapeDtypeStruct((1, 64, 64, 3), jnp.float32))
  assert _num_params(abstract) == 83_653_863


def test_shapes_and_mean_decoding():
  assert KLAutoencoder(channel_mult=(1, 2)).downsample_factor == 2
  model = KLAutoencoder(channels=16, channel_mult=(1, 2, 2), num_res_blocks=1,
                        latent_channels=3, num_groups=8)
  assert model.downsample_factor == 4
  x = jax.random.uniform(jax.random.key(1), (2, 16, 16, 3))
  variables = _random_variables(model, x)

  @jax.jit
  def outputs(variables, x):
    x_hat, mean, logvar = model.apply(variables, x)
    decoded = model.apply(variables, model.apply(variables, x, method='encode')[0],
                          method='decode')
    return x_hat, mean, logvar, decoded, model.apply(variables, x, jax.random.key(2))[0]

  x_hat, mean, logvar, decoded, sampled = outputs(variables, x)
  assert mean.shape == logvar.shape == (2, 4, 4, 3)
  assert x_hat.shape == x.shape and x_hat.dtype == jnp.float32
  # Without an rng the mean is decoded; with one, a different (sampled) latent.
  np.testing.assert_allclose(x_hat, decoded, rtol=1e-5, atol=1e-5)
  assert not np.allclose(sampled, x_hat)


def test_encoder_rejects_indivisible_images():
  model = KLAutoencoder(channels=16, channel_mult=(1, 2, 2), num_groups=8)
  with pytest.raises(ConfigError, match='divisible by 4'):
    model.init(jax.random.key(0), jnp.zeros((1, 10, 10, 3)))


def test_kl_divergence_matches_the_closed_form():
  mean = jnp.array([[0.0, 1.0], [0.5, -2.0]])
  logvar = jnp.array([[0.0, 0.0], [np.log(4.0), np.log(0.25)]])
  # KL(N(m, s^2) || N(0, 1)) = (m^2 + s^2 - 1 - ln s^2) / 2 per element.
  expected = [0.5 * (0 + 1 - 1 - 0) + 0.5 * (1 + 1 - 1 - 0),
              0.5 * (0.25 + 4 - 1 - np.log(4.0)) + 0.5 * (4 + 0.25 - 1 - np.log(0.25))]
  np.testing.assert_allclose(kl_divergence(mean, logvar), expected, rtol=1e-6)


def _tiny_config(steps, **autoencoder):
  config = config_lib.load(CONFIG + f':steps={steps},batch=32,channels=16,f=2,dtype=float32')
  config.unlock()
  config.data.name = 'synthetic:n=256,size=8,classes=4'
  config.model.kwargs.num_groups = 8
  config.model.kwargs.num_res_blocks = 1
  config.schedule.lr = 2e-3
  config.log_every_steps = 5
  config.checkpoint_every_steps = 0  # Only the final one.
  config.progress_bar = False
  config.plot = False
  config.autoencoder.update(autoencoder)
  return config


def test_training_reduces_reconstruction_error(tmp_path):
  summary = train.run(_tiny_config(30), str(tmp_path), devices=jax.devices()[:1])
  records = [json.loads(line) for line in open(tmp_path / 'metrics.jsonl')]
  l1 = [r['train/l1'] for r in records if 'train/l1' in r]
  psnr = [r['train/psnr'] for r in records if 'train/psnr' in r]
  assert summary['steps'] == 30
  assert l1[-1] < 0.8 * l1[0], l1
  assert psnr[-1] > psnr[0] + 2.0, psnr


def test_loss_weights_reconstruction_and_kl_as_sums():
  config = _tiny_config(1, loss='l2', kl_weight=0.5, sample_posterior=False)
  task = build_task(config, DataInfo(num_classes=4, image_shape=(8, 8, 3),
                                     num_train_examples=32))
  images = jax.random.uniform(jax.random.key(1), (4, 8, 8, 3))
  params = _random_variables(task.model, images)['params']
  loss, (metrics, _) = jax.jit(task.loss)(params, {}, None, {'image': images}, jax.random.key(2))
  x_hat, mean, logvar = jax.jit(task.model.apply)({'params': params}, images)
  pixels = 8 * 8 * 3
  expected = (np.sum(np.square(x_hat - images)) / 4 + 0.5 * np.mean(kl_divergence(mean, logvar)))
  np.testing.assert_allclose(loss, expected / pixels, rtol=1e-5)
  np.testing.assert_allclose(metrics['kl'], np.mean(kl_divergence(mean, logvar)), rtol=1e-5)


@pytest.mark.parametrize('change,message', [
    (lambda c: setattr(c.model, 'name', 'resnet18'), "model.name='kl_autoencoder'"),
    (lambda c: c.model.kwargs.__setattr__('widht', 3), "no attribute 'widht'"),
    (lambda c: c.autoencoder.__setattr__('loss', 'l3'), 'autoencoder.loss'),
])
def test_config_mistakes_are_clear(change, message):
  config = _tiny_config(1)
  change(config)
  with pytest.raises(ConfigError, match=message):
    build_task(config, DataInfo(num_classes=4, image_shape=(8, 8, 3), num_train_examples=32))
