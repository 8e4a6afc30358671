"""The airbench94 recipe's pieces: whitening init, Dirac init, parameter count, alternating flip
and translate statistics, Lookahead arithmetic, TTA averaging, and a tiny run of the config."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

import jaxcv.fast  # noqa: F401 - registers the task and ops.
from jaxcv import config as config_lib
from jaxcv import train
from jaxcv.data import augment as augment_lib
from jaxcv.data.dataset import DataInfo
from jaxcv.evaluators.classification import with_tta
from jaxcv.fast.augment import alternating_flip
from jaxcv.fast.task import AirbenchTask
from jaxcv.models import build_model
from jaxcv.models.airbench import dirac_init, whitening_kernel
from jaxcv.tasks.base import TrainState

from conftest import REPO_ROOT

CONFIG = str(REPO_ROOT / 'configs' / 'fast_cifar10' / 'airbench94.py')


def _patches(x, p=2):
  n, h, w, c = x.shape
  return np.concatenate([x[:, dy:dy + h - p + 1, dx:dx + w - p + 1] for dy in range(p)
                         for dx in range(p)], -1).reshape(-1, p * p * c)


def test_whitening_kernel_whitens_patches():
  rng = np.random.default_rng(0)
  # Correlated channels, so whitening has something to undo.
  base = rng.integers(0, 200, (64, 8, 8, 1))
  images = np.clip(base + rng.integers(0, 56, (64, 8, 8, 3)), 0, 255).astype(np.uint8)
  kernel = np.asarray(whitening_kernel(images, (0.5,) * 3, (0.25,) * 3, eps=1e-8))
  assert kernel.shape == (2, 2, 3, 24)
  np.testing.assert_allclose(kernel[..., 12:], -kernel[..., :12])
  x = (images / 255.0 - 0.5) / 0.25
  out = _patches(x) @ kernel.reshape(12, 24)[:, :12]  # The conv, as a matmul on patches.
  cov = out.T @ out / len(out)
  np.testing.assert_allclose(cov, np.eye(12), atol=1e-3)


def test_dirac_init_is_identity_on_the_first_channels():
  kernel = dirac_init(jax.random.key(0), (3, 3, 4, 6))
  x = jax.random.normal(jax.random.key(1), (2, 5, 5, 4))
  y = jax.lax.conv_general_dilated(x, kernel, (1, 1), 'SAME',
                                   dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
  np.testing.assert_allclose(y[..., :4], x, atol=1e-6)
  assert float(jnp.abs(kernel[..., 4:]).max()) > 0  # The rest keeps its random init.


def test_parameter_count_matches_airbench94():
  model = build_model('airbench94', 10)
  variables = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, 32, 32, 3))))
  count = sum(x.size for x in jax.tree.leaves(variables['params']))
  convs = 9 * (24 * 64 + 64 * 64 + 64 * 256 + 3 * 256 * 256)
  # Trainable parameters of airbench94: whitening bias, convs, BN biases (no BN scales), head.
  assert count == 24 + convs + (64 + 64 + 4 * 256) + 256 * 10 == 1_971_352
  assert variables['whitening']['kernel'].shape == (2, 2, 3, 24)


def test_alternating_flip_shows_each_image_both_ways_in_two_epochs():
  images = jnp.broadcast_to(jnp.arange(4.0)[None, None, :, None], (1000, 2, 4, 1))
  ids = jnp.arange(1000)
  flipped = [np.asarray(alternating_flip(images, ids, jnp.int32(e), seed=0)[:, 0, 0, 0] == 3)
             for e in range(4)]
  np.testing.assert_array_equal(flipped[0], ~flipped[1])
  np.testing.assert_array_equal(flipped[0], flipped[2])  # A fixed bit per image...
  assert 0.45 < flipped[0].mean() < 0.55  # ...that is a fair coin across images.
  other_seed = np.asarray(alternating_flip(images, ids, jnp.int32(0), seed=1)[:, 0, 0, 0] == 3)
  assert (other_seed != flipped[0]).any()


def test_translate_shifts_by_at_most_pad_with_reflection():
  augment = augment_lib.build('translate(pad=2)')
  image = jnp.broadcast_to(jnp.arange(8.0)[None, :, None], (8, 8, 1)) / 10
  out = augment(jax.random.key(0), jnp.broadcast_to(image, (500, 8, 8, 1)))
  shift = np.asarray(out[:, 4, 4, 0] * 10 - 4).round().astype(int)  # Column shift per image.
  assert set(shift) == {-2, -1, 0, 1, 2}
  # Reflect padding: never the zero fill of a constant pad.
  assert float(out.min()) >= 0 and (np.asarray(out[:, :, 0, 0]) > 0).any()


def _lookahead_task(total_steps=20, every=5):
  config = config_lib.base_config()
  config.task = 'airbench'
  config.model.name = 'mlp'
  config.total_steps = total_steps
  config.batch_size = 4
  config.data.augment = ''
  config.fast = ml_collections.ConfigDict(
      {'altflip': False, 'lookahead_every': every, 'lookahead_decay': 0.5})
  return AirbenchTask(config, DataInfo(num_classes=2, image_shape=(2, 2, 1),
                                       num_train_examples=8))


def test_lookahead_syncs_every_k_steps_and_ends_on_the_slow_weights():
  task = _lookahead_task()
  slow = {'w': jnp.zeros(3)}
  state = TrainState(step=jnp.int32(10), params={'w': jnp.ones(3)}, model_state={},
                     opt_state=None, extra={'slow_params': slow, 'slow_state': {}})
  synced = task.after_update(state)
  decay = 0.5 * (10 / 20)**3
  np.testing.assert_allclose(synced.params['w'], 1 - decay)
  np.testing.assert_allclose(synced.extra['slow_params']['w'], 1 - decay)
  between = task.after_update(state.replace(step=jnp.int32(11)))
  np.testing.assert_allclose(between.params['w'], 1.0)  # No sync: fast weights untouched.
  np.testing.assert_allclose(between.extra['slow_params']['w'], 0.0)
  last = task.after_update(state.replace(step=jnp.int32(21)))  # Past the end, off-period.
  np.testing.assert_allclose(last.params['w'], 0.0)  # The slow copy is adopted.


def test_tta_averages_logits_over_views():
  # A "model" whose logits are the mean of column 0 and of the top-left pixel: view-dependent.
  def predict(variables, images):
    del variables
    return jnp.stack([images[:, :, 0, 0].mean(1), images[:, 0, 0, 0]], -1)

  images = jax.random.uniform(jax.random.key(0), (3, 4, 4, 1))
  flip = images[:, :, ::-1]
  expected_flip = 0.5 * (predict(None, images) + predict(None, flip))
  np.testing.assert_allclose(with_tta(predict, 'flip')(None, images), expected_flip, rtol=1e-6)
  padded = jnp.pad(images, ((0, 0), (1, 1), (1, 1), (0, 0)), mode='reflect')
  views = [padded[:, :4, :4], padded[:, 2:, 2:]]
  mirror = lambda x: 0.5 * (predict(None, x) + predict(None, x[:, :, ::-1]))
  expected = 0.5 * mirror(images) + 0.25 * (mirror(views[0]) + mirror(views[1]))
  np.testing.assert_allclose(with_tta(predict, 'flip_translate')(None, images), expected,
                             rtol=1e-6)
  assert with_tta(predict, 'none') is predict
  with pytest.raises(Exception, match='tta'):
    with_tta(predict, 'rotate')


def test_config_matches_airbench94_hyperparameters():
  config = config_lib.load(CONFIG)
  assert config.total_steps == 476  # ceil(48 * 9.9)
  assert config.schedule.lr == pytest.approx(1.5)  # 11.5 / 7850.67 per summed example x 1024.
  # Decay per step, lr * wd, equals airbench's 0.0153 * 1024 / 7850.67.
  assert config.schedule.lr * config.optimizer.weight_decay == pytest.approx(
      0.0153 * 1024 / (1024 * (1 + 1 / 0.15)))
  assert config.optimizer.freeze_after == (('whiten_bias', 144),)


def test_tiny_recipe_trains_end_to_end(tmp_path):
  config = config_lib.load(CONFIG + ':runlocal', [
      'data.name=synthetic:n=128,size=32,classes=4', 'progress_bar=false', 'plot=false',
      'total_steps=4', 'batch_size=16', 'data.train_examples=128'])
  with config.unlocked():
    config.model.kwargs.widths = (8, 8, 8)
  summary = train.run(config, str(tmp_path), devices=jax.devices()[:1])
  assert summary['steps'] == 4 and np.isfinite(summary['test/loss'])
