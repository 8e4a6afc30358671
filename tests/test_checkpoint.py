"""Reading another run's weights: load_run_weights / choose_weights / find_run_config."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxcv import checkpoint as checkpoint_lib
from jaxcv import config as config_lib
from jaxcv import train
from jaxcv.errors import CheckpointError, ConfigError

from conftest import REPO_ROOT

TINY = str(REPO_ROOT / 'tests' / 'configs' / 'tiny.py')
UNSET = object()


def fake_run(path, eval_with_ema=UNSET, step=7):
  """A run folder with one checkpoint whose params are 0s, EMA params 1s, plus batch stats."""
  state = {'params': {'w': jnp.zeros(3)}, 'ema_params': {'w': jnp.ones(3)},
           'model_state': {'batch_stats': {'mean': jnp.full(3, 2.0)}}}
  checkpointer = checkpoint_lib.Checkpointer(checkpoint_lib.checkpoint_dir(str(path)),
                                             async_save=False)
  checkpointer.save(step, state, {'step': step})
  checkpointer.close()
  config = {'model': {'name': 'small_cnn'}}
  if eval_with_ema is not UNSET:
    config['eval_with_ema'] = eval_with_ema
  (path / 'config.json').write_text(json.dumps(config))
  return path


@pytest.fixture(scope='module')
def run_without_ema(tmp_path_factory):
  """A real tiny training run with ema_decay=0 (the default)."""
  workdir = tmp_path_factory.mktemp('no_ema_run')
  config = config_lib.load(TINY, ['total_steps=5'])
  train.run(config, str(workdir), devices=jax.devices()[:1])
  return workdir


@pytest.mark.parametrize('eval_with_ema', [True, UNSET])
def test_ema_when_present_and_the_run_evaluates_with_it(tmp_path, eval_with_ema):
  run = fake_run(tmp_path, eval_with_ema)
  weights = checkpoint_lib.load_run_weights(str(run))
  assert weights.used_ema and weights.step == 7
  np.testing.assert_array_equal(weights.params['w'], np.ones(3))
  assert weights.run_dir == tmp_path.resolve() and weights.config['model']['name'] == 'small_cnn'
  assert set(weights.variables) == {'params', 'batch_stats'}
  np.testing.assert_array_equal(weights.variables['batch_stats']['mean'], np.full(3, 2.0))
  plain = checkpoint_lib.load_run_weights(str(run), use_ema=False)
  assert not plain.used_ema
  np.testing.assert_array_equal(plain.params['w'], np.zeros(3))


def test_params_when_the_run_evaluates_without_ema(tmp_path):
  run = fake_run(tmp_path, eval_with_ema=False)
  weights = checkpoint_lib.load_run_weights(str(run))
  assert not weights.used_ema
  np.testing.assert_array_equal(weights.params['w'], np.zeros(3))
  # An explicit choice, or a caller's own default, overrides the run's eval_with_ema.
  for forced in (checkpoint_lib.load_run_weights(str(run), use_ema=True),
                 checkpoint_lib.load_run_weights(str(run), default_use_ema=True)):
    assert forced.used_ema
    np.testing.assert_array_equal(forced.params['w'], np.ones(3))


def test_real_run_without_ema_found_from_a_step_dir(run_without_ema):
  checkpoints = run_without_ema / 'checkpoints'
  step_dir = checkpoints / str(max(int(p.name) for p in checkpoints.iterdir() if p.name.isdigit()))
  raw, step = checkpoint_lib.load_pretrained(str(run_without_ema))
  weights = checkpoint_lib.load_run_weights(str(step_dir))
  assert weights.step == step == 5 and not weights.used_ema
  assert weights.run_dir == run_without_ema.resolve()
  assert weights.config['total_steps'] == 5 and weights.config['eval_with_ema'] is True
  jax.tree.map(np.testing.assert_array_equal, weights.params, raw['params'])
  assert 'batch_stats' in weights.variables  # small_cnn has batch norm.
  with pytest.raises(ConfigError, match=r'use_ema=True: checkpoint .* has no EMA weights'):
    checkpoint_lib.load_run_weights(str(step_dir), use_ema=True)


def test_missing_checkpoint_is_a_checkpoint_error(tmp_path):
  with pytest.raises(CheckpointError, match='no readable checkpoint'):
    checkpoint_lib.load_run_weights(str(tmp_path))
  (tmp_path / 'config.json').write_text('{}')  # A run folder, but nothing saved.
  with pytest.raises(CheckpointError, match='no readable checkpoint'):
    checkpoint_lib.load_run_weights(str(tmp_path))


def test_find_run_config_looks_up_to_three_parents(tmp_path):
  deep = tmp_path / 'a' / 'b' / 'c' / 'd'
  deep.mkdir(parents=True)
  (tmp_path / 'config.json').write_text('{"total_steps": 1}')
  assert checkpoint_lib.find_run_config(deep) is None  # Four levels up: too far.
  (tmp_path / 'a' / 'config.json').write_text('{"total_steps": 2}')
  assert checkpoint_lib.find_run_config(deep) == ((tmp_path / 'a').resolve(), {'total_steps': 2})
  assert checkpoint_lib.find_run_config(str(tmp_path))[1] == {'total_steps': 1}


def test_choose_weights():
  params, ema = {'w': 0}, {'w': 1}
  with_ema = {'params': params, 'ema_params': ema}
  without = {'params': params, 'ema_params': None}
  assert checkpoint_lib.choose_weights(with_ema, None) == (ema, True)
  assert checkpoint_lib.choose_weights(with_ema, None, default_use_ema=False) == (params, False)
  assert checkpoint_lib.choose_weights(with_ema, False) == (params, False)
  assert checkpoint_lib.choose_weights(with_ema, True, default_use_ema=False) == (ema, True)
  assert checkpoint_lib.choose_weights(without, None) == (params, False)
  assert checkpoint_lib.choose_weights({'params': params}, None) == (params, False)
  assert checkpoint_lib.choose_weights(without, False) == (params, False)
  with pytest.raises(ConfigError, match='init_from=ema: the init_checkpoint has no EMA weights'):
    checkpoint_lib.choose_weights(without, True, what='init_from=ema: the init_checkpoint')
