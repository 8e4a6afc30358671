"""COIN and the baseline defenses: interpolation against SciPy for both wrap modes, per-sample
randomness, determinism, label mixing, soft-target loss, the config family and a tiny sweep."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image
from scipy.ndimage import map_coordinates

from jaxcv import config as config_lib
from jaxcv.data import augment
from jaxcv.data.dataset import DataInfo
from jaxcv.errors import ConfigError
from jaxcv.tasks.base import Task
from jaxcv.tasks.classification import ClassificationTask
from jaxcv.unlearnable import coin as coin_lib
from jaxcv import sweep
from jaxcv.unlearnable import report

from conftest import REPO_ROOT

CONFIG = str(REPO_ROOT / 'configs' / 'coin' / 'resnet18.py')
TINY = 'runlocal,model=small_cnn,dataset=synthetic:n=128;size=8;classes=4'
TABLE = str(REPO_ROOT / 'configs' / 'coin' / 'table.py')


def _images(n=8, h=6, w=7, seed=0):
  return np.random.default_rng(seed).random((n, h, w, 3)).astype(np.float32)


@pytest.mark.parametrize('wrap,scipy_mode', [('legacy', 'wrap'), ('grid', 'grid-wrap')])
def test_bilinear_warp_matches_scipy_map_coordinates(wrap, scipy_mode):
  images = _images()
  n, h, w, _ = images.shape
  rng = np.random.default_rng(1)
  dy = rng.uniform(-3.2, 3.2, (n, h, w)).astype(np.float32)
  dx = rng.uniform(-3.2, 3.2, (n, h, w)).astype(np.float32)
  dy[0], dx[1] = np.round(dy[0]), -1.0  # Integer coordinates, on and across the border.
  out = np.asarray(coin_lib.bilinear_warp(jnp.asarray(images), jnp.asarray(dy), jnp.asarray(dx),
                                          wrap))
  rows, cols = np.meshgrid(np.arange(h), np.arange(w), indexing='ij')
  for i in range(n):
    for c in range(3):
      expected = map_coordinates(images[i, ..., c], [rows + dy[i], cols + dx[i]], order=1,
                                 mode=scipy_mode)
      np.testing.assert_allclose(out[i, ..., c], expected, atol=2e-6)


def test_wrap_modes_differ_only_across_the_border():
  images = jnp.asarray(_images())
  dy = jnp.full((8, 6, 7), 0.5)
  dx = jnp.zeros((8, 6, 7))
  legacy, grid = (np.asarray(coin_lib.bilinear_warp(images, dy, dx, m)) for m in ('legacy', 'grid'))
  np.testing.assert_allclose(legacy[:, :-1], grid[:, :-1], atol=1e-6)
  assert not np.allclose(legacy[:, -1], grid[:, -1])


def test_coin_is_random_per_sample_and_deterministic_per_rng():
  image = _images(n=1)
  batch = jnp.asarray(np.repeat(np.floor(image * 255) / 255, 4, axis=0))
  coin = jax.jit(coin_lib.coin, static_argnames=('alpha', 'wrap', 'quantize'))
  a = np.asarray(coin(jax.random.key(0), batch, alpha=2.0))
  b = np.asarray(coin(jax.random.key(0), batch, alpha=2.0))
  c = np.asarray(coin(jax.random.key(1), batch, alpha=2.0))
  np.testing.assert_array_equal(a, b)
  assert not np.array_equal(a, c)
  assert len({a[i].tobytes() for i in range(4)}) == 4  # A fresh displacement per image.
  np.testing.assert_allclose(a * 255, np.round(a * 255), atol=1e-3)  # On the uint8 grid.
  unquantized = coin(jax.random.key(0), batch, alpha=2.0, quantize=False)
  np.testing.assert_allclose(a, np.floor(np.asarray(unquantized) * 255 + 1e-4) / 255, atol=1e-6)
  # alpha = 0 samples every pixel where it is: the identity on uint8-grid images.
  np.testing.assert_allclose(coin(jax.random.key(0), batch, alpha=0.0), batch, atol=1e-6)


def test_coin_in_the_augmentation_pipeline():
  pipeline = jax.jit(augment.build("crop(padding=4)|flip|coin(alpha=1.6,wrap='grid')"))
  images = jnp.asarray((_images(n=4) * 255).astype(np.uint8))
  np.testing.assert_array_equal(pipeline(jax.random.key(2), images),
                                pipeline(jax.random.key(2), images))
  with pytest.raises(ConfigError, match='wrap'):
    augment.build("coin(wrap='nearest')")
  with pytest.raises(ConfigError, match="no argument 'severity'"):
    augment.build('coin(severity=4)')


def test_grayscale_matches_pillow_luma():
  images = (_images(n=3) * 255).astype(np.uint8)
  out = np.asarray(jax.jit(augment.build('grayscale'))(jax.random.key(0), jnp.asarray(images)))
  for i in range(3):
    luma = np.asarray(Image.fromarray(images[i]).convert('L'), np.float32) / 255
    np.testing.assert_allclose(out[i, ..., 0], luma, atol=1 / 255 + 1e-6)
    np.testing.assert_array_equal(out[i, ..., 0], out[i, ..., 2])


@pytest.mark.parametrize('spec', ['mixup(alpha=1.0)', 'cutmix(alpha=1.0)'])
def test_label_mixing_is_consistent_and_deterministic(spec):
  n = 8  # One image per class, so a target row says which images were mixed.
  images = jnp.asarray(_images(n=n, h=8, w=8))
  labels = jnp.arange(n)
  mix = jax.jit(augment.build_mixing(spec, n))
  for seed in range(3):
    out, targets = (np.asarray(a) for a in mix(jax.random.key(seed), images, labels))
    again, _ = mix(jax.random.key(seed), images, labels)
    np.testing.assert_array_equal(out, again)
    np.testing.assert_allclose(targets.sum(-1), 1.0, atol=1e-6)
    for i in range(n):
      if spec.startswith('mixup'):
        # A convex combination of the images, weighted by the target.
        np.testing.assert_allclose(out[i], np.tensordot(targets[i], images, 1), atol=1e-5)
      else:
        # Pixels come from the image or its partner; the partner's share is its target weight.
        partner = int(np.argsort(targets[i])[-2]) if targets[i, i] < 1 else i
        from_partner = np.all(out[i] == np.asarray(images[partner]), -1)
        assert np.all(from_partner | np.all(out[i] == np.asarray(images[i]), -1))
        if partner != i:
          assert from_partner.mean() == pytest.approx(targets[i, partner], abs=1e-6)
  with pytest.raises(ConfigError, match='unknown label-mixing op'):
    augment.build_mixing('mixit', n)
  with pytest.raises(ConfigError, match='alpha must be > 0'):
    augment.build_mixing('mixup(alpha=0.0)', n)
  assert augment.build_mixing('', n) is None


def _task(mixing=''):
  config = config_lib.load(str(REPO_ROOT / 'tests' / 'configs' / 'tiny.py'))
  config.unlock()
  config.data.mixing = mixing
  return ClassificationTask(config, DataInfo(4, (8, 8, 3), 64))


def test_soft_targets_in_the_classification_loss():
  task = _task()
  params, state = jax.jit(task.init_variables)(jax.random.key(0))
  loss = jax.jit(lambda batch: task.loss(params, state, None, batch, jax.random.key(1))[0])
  images = jnp.asarray(_images(n=8, h=8, w=8))
  labels = jnp.arange(8) % 4
  batch = {'image': images, 'label': labels}
  hard = loss(batch)
  soft = loss({**batch, 'target': jax.nn.one_hot(labels, 4)})
  assert float(soft) == pytest.approx(float(hard), rel=1e-6)
  uniform = loss({**batch, 'target': jnp.full((8, 4), 0.25)})
  assert float(uniform) != pytest.approx(float(hard), rel=1e-3)
  # Without mixing the augmentation is the base task's, rng for rng.
  uint8 = {'image': (images * 255).astype(jnp.uint8), 'label': labels}
  np.testing.assert_array_equal(task.augment(jax.random.key(3), uint8)['image'],
                                Task.augment(task, jax.random.key(3), uint8)['image'])
  mixed = _task('cutmix(alpha=1.0)').augment(jax.random.key(3), uint8)
  assert mixed['target'].shape == (8, 4) and 'label' in mixed


def _module(path):
  return config_lib.load_module(path)


def test_every_setting_of_the_config_family_loads():
  family = _module(CONFIG)
  for setting in family.SETTINGS:
    config = config_lib.load(f'{CONFIG}:setting={setting}')
    poison, defense = family.SETTINGS[setting]
    assert config.data.name.endswith('cifar10') and config.coin.setting == setting
    assert config.data.augment.startswith('crop(padding=4)|flip')  # Defenses come after.
    assert (poison or 'cifar10:') in config.data.name or poison is None
    assert ('coin(' in config.data.augment) == (defense == 'coin')
    assert (config.task == 'pgd_at') == (defense == 'pgd_at')
  coin = config_lib.load(f'{CONFIG}:setting=cuda_coin,alpha=1.6,wrap=grid,protocol=short')
  assert coin.data.augment.endswith("coin(alpha=1.6,wrap='grid')")
  assert coin.num_epochs == 8 and coin.batch_size == 512
  assert config_lib.load(f'{CONFIG}:setting=clean').data.name == 'cifar10'
  assert config_lib.load(f'{CONFIG}:setting=cuda_jpeg').data.name.startswith('jpeg(quality=10):cuda(')
  assert config_lib.load(f'{CONFIG}:setting=cuda_mixup').data.mixing == 'mixup(alpha=1.0)'
  assert config_lib.load(f'{CONFIG}:setting=cuda_grayscale').data.name.startswith('grayscale:')
  assert config_lib.load(f'{CONFIG}:setting=cuda_pgd_at').adversarial.eps == pytest.approx(8 / 255)
  with pytest.raises(ConfigError, match='unknown setting'):
    config_lib.load(f'{CONFIG}:setting=cuda_rotate')


def test_table_seeds_and_huda_study_rows():
  """`seeds` repeats the claim rows with other training seeds, one line per setting; the HUDA
  study's rows each change one thing (no flip, a longer kernel, a stronger blur)."""
  table = _module(TABLE).get_table('cpu,seeds=3,huda_study=1')
  rows = {r.name: r for r in table.rows}
  assert [rows[f'cuda_coin{s}'].group for s in ('', '_s1', '_s2')] == ['cuda_coin'] * 3
  assert rows['cuda_coin_s2'].overrides == {'seed': 2} and rows['cuda_jpeg'].group == ''

  def load(name):
    return config_lib.load(f'{CONFIG}:{rows[name].arg}')
  assert load('huda_noflip').data.augment == 'crop(padding=4)'
  assert load('huda_coin_noflip').data.augment.startswith('crop(padding=4)|coin(')
  assert load('huda_k7').data.name.startswith('huda(pb=0.3,seed=0,size=7):')
  assert load('huda').data.name.startswith('huda(pb=0.3,seed=0):')  # The cached name as before.
  assert load('huda_pb0.6').data.augment == 'crop(padding=4)|flip'


def test_the_table_runs_two_settings_and_theta_at_runlocal(tmp_path, monkeypatch):
  monkeypatch.setenv('JAXCV_CACHE_DIR', str(tmp_path / 'cache'))
  workdir = tmp_path / 'runs'
  # A second architecture (an MLP, cheap to compile) for the CUDA line.
  spec = (f'{TABLE}:runlocal,dataset=synthetic:n=128;size=8;classes=4,theta_samples=1,'
          'archs=small_cnn;mlp')
  records = sweep.run_table(spec, str(workdir), rows=['cuda', 'cuda_coin', 'theta', 'cuda_mlp'])
  assert [(r['name'], r['status']) for r in records] == [
      ('cuda', 'ok'), ('cuda_coin', 'ok'), ('theta', 'ok'), ('cuda_mlp', 'ok')]
  coin_config = json.loads((workdir / 'cuda_coin' / 'config.json').read_text())
  assert 'coin(alpha=2.0' in coin_config['data']['augment']
  assert coin_config['data']['name'].startswith('cuda(pb=0.3,seed=0):synthetic')
  # The two rows differ only by COIN (same seed, data order and initialisation): COIN must
  # change the trained model, hence its clean-test loss.
  summaries = [json.loads((workdir / name / 'summary.json').read_text())
               for name in ('cuda', 'cuda_coin')]
  assert summaries[0]['test/loss'] != pytest.approx(summaries[1]['test/loss'], rel=1e-4)
  rows = report.collect(workdir)
  assert [r['name'] for r in rows] == ['cuda', 'cuda_coin', 'cuda_mlp']
  text = (workdir / 'coin_table.md').read_text()
  for r, model in zip(rows, ('small_cnn', 'small_cnn', 'mlp')):
    line = next(line for line in text.splitlines() if line.startswith(f'| {r["name"]} |'))
    assert line.split(' | ')[1:3] == [model, 'cuda'] and f' {r["accuracy"]:.2f} |' in line
  assert 'Θ_imi' in text and (workdir / 'coin_table.png').stat().st_size > 1000
  generic = (workdir / 'table.md').read_text()
  assert '| cuda_coin | cuda | coin |' in generic and '[72.41 [R]]' in generic
  # The CUDA line is the mean over the two architectures, n = 2.
  mean = (rows[0]['accuracy'] + rows[2]['accuracy']) / 2
  assert f'| cuda | cuda | none | {mean:.2f} ± ' in generic and ' | 2 | ok |' in generic
  assert '| theta |' not in generic  # An analysis row, rendered by the COIN hook only.
  # Every setting of the family is a row of the table, plus the alpha sweep and Θ; the gpu
  # preset repeats every setting on the paper's other three architectures, one line per setting.
  settings = _module(CONFIG).SETTINGS
  for preset, archs in (('cpu', ['resnet_tiny']),
                        ('gpu', ['resnet18', 'vgg16', 'densenet121', 'mobilenetv2'])):
    table = sweep.load_table(f'{TABLE}:{preset}')
    assert set(settings) <= {row.name for row in table.rows}
    assert len(table.rows) == len(settings) * len(archs) + 7
    line = {row.name: row.arg for row in table.rows if row.group == 'cuda_coin'}
    assert set(line) == ({'cuda_coin'} | {f'cuda_coin_{a}' for a in archs[1:]} if archs[1:]
                         else set())
    assert all(line[f'cuda_coin_{a}'].endswith(f',model={a}') for a in archs[1:])
