"""One way to load a run (jaxcv.inference) and evaluation-only runs that read no training data."""

import jax
import numpy as np
import pytest

from jaxcv import checkpoint as checkpoint_lib
from jaxcv import config as config_lib
from jaxcv import inference, train
from jaxcv.errors import CheckpointError, ConfigError
from jaxcv.evaluators.artefacts import Artefacts, new_figure
from jaxcv.tasks import afd
from jaxcv.tasks.adversarial import add_adversarial_config

from conftest import REPO_ROOT

TINY = str(REPO_ROOT / 'tests' / 'configs' / 'tiny.py')
DATA = 'synthetic:n=64,size=8,classes=4'
ONE = jax.devices()[:1]


def tiny_config(*extra, data=DATA):
  """The tiny test config at 2 steps, batch 16, a 4-wide model on `data`; `extra` overrides."""
  config = config_lib.load(TINY, ['total_steps=2', 'batch_size=16', *extra])
  config.unlock()
  config.data.name = data
  config.model.kwargs.width = 4
  config.evals.test.max_examples = 32
  return config


def trained(tmp_path_factory, name, config):
  """The workdir of `config` trained with the real loop on one device."""
  workdir = tmp_path_factory.mktemp(name)
  train.run(config, str(workdir), devices=ONE)
  return workdir


@pytest.fixture(scope='module')
def ema_run(tmp_path_factory):
  return trained(tmp_path_factory, 'ema_run', tiny_config('ema_decay=0.5'))


@pytest.fixture(scope='module')
def plain_run(tmp_path_factory):
  return trained(tmp_path_factory, 'plain_run', tiny_config())


def images(n=5, seed=0):
  return jax.random.uniform(jax.random.key(seed), (n, 8, 8, 3))


def test_load_run_ema_and_plain(ema_run):
  raw, step = checkpoint_lib.load_pretrained(str(ema_run))
  auto = inference.load_run(ema_run)
  ema = inference.load_run(ema_run, weights='ema')
  plain = inference.load_run(str(ema_run / 'checkpoints' / '2'), weights='plain')
  assert auto.step == step == 2 and auto.used_ema and ema.used_ema and not plain.used_ema
  assert auto.config.model.name == 'small_cnn' and auto.config.ema_decay == 0.5
  assert auto.info == inference.DataInfo(4, (8, 8, 3), 64, auto.info.class_names)
  jax.tree.map(np.testing.assert_array_equal, ema.variables['params'], raw['ema_params'])
  jax.tree.map(np.testing.assert_array_equal, plain.variables['params'], raw['params'])
  x = images()
  ema_logits = ema.predict_fns['logits'](ema.variables, x)
  assert not np.allclose(ema_logits, plain.predict_fns['logits'](plain.variables, x))
  clf = ema.classifier()
  logits, features = clf.features(clf.variables, x)
  np.testing.assert_allclose(logits, ema_logits, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(clf.logits(clf.variables, x), ema_logits, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(features @ clf.head.kernel + clf.head.bias, logits, rtol=1e-4,
                             atol=1e-5)
  assert clf.name == f'{ema_run.name}@2' and clf.fingerprint != plain.classifier().fingerprint


def test_missing_weights_and_missing_run_are_clear_errors(plain_run, tmp_path):
  with pytest.raises(ConfigError, match='weights=ema.*no EMA weights'):
    inference.load_run(plain_run, weights='ema')
  assert not inference.load_run(plain_run).used_ema  # 'auto' falls back to the trained ones.
  with pytest.raises(ConfigError, match='weights='):
    inference.load_run(plain_run, weights='best')
  with pytest.raises(ConfigError, match='not a jaxcv run'):
    inference.load_run(tmp_path)
  (tmp_path / 'config.json').write_text('{}')
  with pytest.raises(CheckpointError, match='no readable checkpoint'):
    inference.load_run(tmp_path)


def test_afd_run_exports_a_plain_classifier_with_the_same_logits(plain_run, tmp_path):
  config = tiny_config(f'init_checkpoint={plain_run}', 'ema_decay=0.9')
  config.task = 'afd'
  add_adversarial_config(config, steps=1, step_size=4 / 255)
  afd.add_afd_config(config)
  train.run(config, str(tmp_path / 'afd'), devices=ONE)
  run = inference.load_run(tmp_path / 'afd', weights='plain')
  assert afd.is_disentangled(run.variables['params'])
  clf = run.classifier()
  assert afd.TEACHER not in clf.variables and 'head' in clf.variables['params']
  x = images(seed=1)
  np.testing.assert_allclose(clf.logits(clf.variables, x),
                             run.predict_fns['logits'](run.variables, x), rtol=1e-5, atol=1e-5)
  # A plain classifier run cannot be asked for a classifier it does not have.
  diffusion_like = inference.load_run(plain_run)
  params = dict(diffusion_like.variables['params'])
  params.pop('head')
  with pytest.raises(ConfigError, match='no classifier'):
    diffusion_like.task.export_classifier({'params': params})


def test_evaluation_only_run_reads_no_training_split(plain_run, tmp_path, monkeypatch):
  trained = (plain_run / 'summary.json').read_text()

  def no_training_data(config):
    raise AssertionError(f'opened the training split of {config.data.name}')

  monkeypatch.setattr(train, 'open_train_data', no_training_data)
  evaluation = tiny_config('total_steps=0', f'init_checkpoint={plain_run}')
  summary = train.run(evaluation, str(tmp_path / 'eval'), devices=ONE)
  assert summary['steps'] == 0
  assert f'"test/accuracy": {summary["test/accuracy"]}' in trained
  assert inference.stored_data_info(tmp_path / 'eval') == inference.load_run(plain_run).info


def test_artefacts_writer(tmp_path):
  out = Artefacts(tmp_path / 'ev')
  out.arrays('scores.npz', a=np.arange(3))
  out.json('r.json', {'x': np.float32(1.5)})
  out.text('r.md', '# hi\n')
  fig = new_figure(figsize=(2, 2))
  fig.add_subplot().plot([0, 1], [1, 0])
  out.figure('f.png', fig)
  assert sorted(p.name for p in (tmp_path / 'ev').iterdir()) == ['f.png', 'r.json', 'r.md',
                                                                  'scores.npz']
  np.testing.assert_array_equal(np.load(tmp_path / 'ev' / 'scores.npz')['a'], np.arange(3))
  assert (tmp_path / 'ev' / 'r.json').read_text().count('1.5') == 1
  assert Artefacts(None).json('x.json', {}) is None
