"""ERM++: the uniform average, BN refresh, linear probing, the full-data pass, selection and the
table at `runlocal`. Everything runs on fake RotatedMNIST idx files made in tmp_path."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxcv import averaging, checkpoint, sweep, train
from jaxcv import config as config_lib
from jaxcv.data import open_train_data
from jaxcv.data.dataset import DataInfo
from jaxcv.domain_generalization import erm_pp, selection
from jaxcv.errors import ConfigError
from jaxcv.tasks import TrainState, build_task

from conftest import REPO_ROOT
from test_domain_generalization import _private_cache, fake_mnist  # noqa: F401  (autouse)

CONFIG = str(REPO_ROOT / 'configs' / 'erm_pp' / 'erm_pp.py')
TABLE = str(REPO_ROOT / 'configs' / 'erm_pp' / 'table.py')


@pytest.fixture(scope='module')
def data_dir(tmp_path_factory):
  root = tmp_path_factory.mktemp('data')
  fake_mnist(root / 'mnist')
  return root


def load(arg, data_dir, *overrides, runlocal=True):
  """The ERM++ config at runlocal on 8x8 images (fast to compile and run)."""
  arg = f'image_size=8,{arg}' + (',runlocal' if runlocal else '')
  return config_lib.load(f'{CONFIG}:{arg}', [
      f'data.data_dir={data_dir}', 'progress_bar=false', 'plot=false',
      'async_checkpointing=false', *overrides])


# ---------------------------------------------------------------------------------------------
# Uniform averaging and the BN refresh
# ---------------------------------------------------------------------------------------------

def test_uniform_update_is_the_mean_of_the_iterates():
  iterates = [{'w': jnp.asarray(np.random.default_rng(i).normal(size=(3,)), jnp.float32)}
              for i in range(9)]  # iterates[t]: the weights after t updates.
  start = 4
  average = iterates[0]
  for step in range(1, 9):
    average = averaging.uniform_update(average, iterates[step], jnp.int32(step), start)
    # ERM++'s MovingAvg: a copy before the start step, then the mean of iterates start-1..step.
    expected = (iterates[step]['w'] if step < start else
                np.mean([it['w'] for it in iterates[start - 1:step + 1]], axis=0))
    np.testing.assert_allclose(average['w'], expected, rtol=1e-6, atol=1e-6)


def _bn_config():
  config = erm_pp.add_erm_pp_config(config_lib.base_config())
  config.model.name = 'mnist_cnn_bn'
  config.averaging.kind = 'uniform'
  config.averaging.start_step = 1
  config.averaging.batch_stats = 'refresh'
  return config


def test_bn_refresh_changes_only_the_averages_batch_stats():
  config = _bn_config()
  task = build_task(config, DataInfo(10, (8, 8, 1), 64))
  params, model_state = task.init_variables(jax.random.key(0))
  newer = jax.tree.map(lambda p: p + 0.1, params)
  state = TrainState(step=jnp.int32(3), params=newer, model_state=dict(model_state),
                     opt_state=None, ema_params=params, ema_model_state=dict(model_state))
  batch = {'image': jax.random.uniform(jax.random.key(1), (16, 8, 8, 1))}
  update = jax.jit(lambda s, b, r: averaging.update(config, task, s, b, r))
  updated = update(state, batch, jax.random.key(2))
  # The parameters' average is the plain update; the refresh touches only the statistics.
  expected = averaging.uniform_update(params, newer, jnp.int32(3), 1)
  for a, b in zip(jax.tree.leaves(updated.ema_params), jax.tree.leaves(expected)):
    np.testing.assert_array_equal(a, b)
  for a, b in zip(jax.tree.leaves((updated.params, updated.model_state)),
                  jax.tree.leaves((state.params, state.model_state))):
    np.testing.assert_array_equal(a, b)
  before, after = state.ema_model_state['batch_stats'], updated.ema_model_state['batch_stats']
  assert jax.tree.structure(before) == jax.tree.structure(after)
  assert all(not np.array_equal(a, b) for a, b in zip(jax.tree.leaves(before),
                                                      jax.tree.leaves(after)))
  # The refreshed statistics are those of a train-mode pass of the averaged weights.
  _, fresh = task.model.apply({'params': expected, **model_state}, batch['image'], train=True,
                              mutable=['batch_stats'])
  for a, b in zip(jax.tree.leaves(after), jax.tree.leaves(fresh['batch_stats'])):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
  # Evaluation pairs the averaged weights with their own statistics.
  variables = updated.eval_variables(True)
  assert variables['params'] is updated.ema_params
  assert variables['batch_stats'] is updated.ema_model_state['batch_stats']
  assert updated.eval_variables(False)['batch_stats'] is updated.model_state['batch_stats']
  # Frozen BN: nothing refreshes.
  config.erm_pp.freeze_bn = True
  frozen = averaging.update(config, build_task(config, DataInfo(10, (8, 8, 1), 64)), state,
                            batch, jax.random.key(2))
  assert frozen.ema_model_state is state.ema_model_state


def test_averaging_and_eval_weights_are_checked():
  config = config_lib.base_config()
  config.total_steps = 1
  config.averaging.kind = 'swa'
  with pytest.raises(ConfigError, match='averaging.kind'):
    config_lib.validate(config)
  config.averaging.kind = 'uniform'
  config.averaging.start_step = 0
  with pytest.raises(ConfigError, match='start_step'):
    config_lib.validate(config)
  config = config_lib.base_config()
  config.evals.val = {'type': 'domains', 'split': 'val', 'weights': 'ema'}
  with pytest.raises(ConfigError, match='keeps no average'):
    averaging.evaluator_uses_average(config, 'val')


def test_training_run_keeps_the_mean_of_its_iterates(tmp_path, data_dir):
  """Through the loop: the averaged weights after 5 steps are the mean of the checkpointed
  iterates 2..5 (start step 3), and the probe that follows keeps the backbone bit-identical."""
  config = load('stage=train,model=mnist_cnn_bn,average_start=3,eval_examples=48', data_dir,
                'total_steps=5', 'checkpoint_every_steps=1', 'keep_checkpoints=10')
  workdir = tmp_path / 'pass1'
  summary = train.run(config, str(workdir))
  iterates = {step: checkpoint.load_pretrained(str(workdir / 'checkpoints' / str(step)))[0]
              for step in range(2, 6)}
  final = iterates[5]
  mean = jax.tree.map(lambda *xs: np.mean(np.stack(xs), 0), *[it['params'] for it in
                                                              iterates.values()])
  for a, b in zip(jax.tree.leaves(final['ema_params']), jax.tree.leaves(mean)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
  assert not np.allclose(jax.tree.leaves(final['ema_params'])[0],
                         jax.tree.leaves(final['params'])[0])
  # The averaged model has statistics of its own; both weights were evaluated.
  assert any(not np.array_equal(a, b) for a, b in zip(
      jax.tree.leaves(final['ema_model_state']), jax.tree.leaves(final['model_state'])))
  assert {'val/acc/mean', 'val_plain/acc/mean', 'test_in/acc/mean',
          'test_in_plain/acc/mean'} <= set(summary)
  weights = checkpoint.load_run_weights(str(workdir))
  assert weights.used_ema
  np.testing.assert_array_equal(jax.tree.leaves(weights.model_state)[0],
                                jax.tree.leaves(final['ema_model_state'])[0])

  # Linear probing from that run: the head moves, nothing else does (bit for bit).
  probe = load(f'stage=probe,model=mnist_cnn_bn,init={workdir},linear_lr=0.01', data_dir,
               'total_steps=3')
  train.run(probe, str(tmp_path / 'probe'))
  probed = checkpoint.load_pretrained(str(tmp_path / 'probe'))[0]['params']
  start = final['params']
  for name in start:
    same = all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(start[name]),
                                                    jax.tree.leaves(probed[name])))
    assert same == (name != 'head'), name


# ---------------------------------------------------------------------------------------------
# The full-data pass and selection never see the test environment
# ---------------------------------------------------------------------------------------------

def test_full_data_pass_trains_on_the_source_envs_whole(data_dir):
  config = load('stage=full,test=30,steps=5', data_dir, runlocal=False)
  assert config.data.train_split == 'train_full' and 'val' not in config.evals
  data, _ = open_train_data(config)
  first = load('stage=train,test=30', data_dir, runlocal=False)
  in_parts, _ = open_train_data(first)
  test_id = 2  # '30' is the third environment.
  assert test_id not in set(data.domains) and set(data.domains) == {0, 1, 3, 4, 5}
  assert len(data) == 5 * 60 and len(in_parts) == 5 * 48  # Out parts (12 per env) added back.


def write_metrics(workdir, rows):
  workdir.mkdir(parents=True, exist_ok=True)
  (workdir / 'metrics.jsonl').write_text(''.join(json.dumps(r) + '\n' for r in rows))


def test_selection_reads_no_test_metric_unless_the_oracle_is_asked(tmp_path):
  # The test env's numbers would pick other steps; training-domain validation must not see them.
  val = {100: .5, 200: .9, 300: .7}
  test_in = {100: .9, 200: .2, 300: .5}
  test_out = {100: .1, 200: .3, 300: .99}
  rows = [{'step': s, 'val/acc/mean': val[s], 'test_in/acc/mean': test_in[s],
           'test_in/acc/15': test_in[s], 'test_out/acc/mean': test_out[s]} for s in val]
  write_metrics(tmp_path / 'run', rows)
  assert erm_pp.selected_step(tmp_path / 'run') == 200
  chosen = erm_pp.select('', str(tmp_path / 'run'))
  assert chosen['selected/step'] == 200 and chosen['test_in/acc/mean'] == .2
  oracle = erm_pp.select('', str(tmp_path / 'run'), method=selection.ORACLE)
  assert oracle['selected/step'] == 300 and oracle['test_in/acc/mean'] == .5
  # Without any test metric the length is still read; removing them changes nothing.
  write_metrics(tmp_path / 'val_only', [{'step': s, 'val/acc/mean': val[s]} for s in val])
  assert erm_pp.selected_step(tmp_path / 'val_only') == 200
  with pytest.raises(ConfigError, match='val'):
    erm_pp.selected_step(tmp_path / 'val_only', 'val_plain/acc/mean')


# ---------------------------------------------------------------------------------------------
# Parameter groups
# ---------------------------------------------------------------------------------------------

def test_attention_only_and_head_only_masks():
  config = erm_pp.add_erm_pp_config(config_lib.base_config(), trainable=erm_pp.ATTENTION_ONLY)
  config.model.name = 'vit_tiny'
  task = build_task(config, DataInfo(10, (32, 32, 3), 64))
  params = jax.eval_shape(lambda r: task.init_variables(r)[0], jax.random.key(0))
  flat = {'/'.join(str(getattr(k, 'key', k)) for k in path): label for path, label in
          jax.tree_util.tree_flatten_with_path(task.trainable_labels(params))[0]}
  trained = {name for name, label in flat.items() if label == 'train'}
  assert trained and all('/attn/' in n or n.startswith('head/') for n in trained)
  assert any('/attn/' in n for n in trained) and any('mlp' in n for n in flat)
  assert all(flat[n] == 'freeze' for n in flat if 'mlp' in n or n.startswith('patch_embed'))
  with pytest.raises(ConfigError, match='matches no parameter'):
    erm_pp.trainable_mask(params, '^nothing$')


# ---------------------------------------------------------------------------------------------
# The table
# ---------------------------------------------------------------------------------------------

def test_table_runs_at_runlocal(tmp_path, data_dir, monkeypatch):
  monkeypatch.setenv('JAXCV_DATA_DIR', str(data_dir))
  records = sweep.run_table(f'{TABLE}:runlocal', str(tmp_path / 'runs'))
  failed = [r for r in records if r['status'] != 'ok']
  assert not failed, failed
  names = {r['name'] for r in records}
  pass2 = [n for n in names if n.endswith('pass2')]
  assert pass2
  for name in pass2:
    config = json.loads((tmp_path / 'runs' / name / 'config.json').read_text())
    assert config['data']['train_split'] == 'train_full'
  assert (tmp_path / 'runs' / 'table.md').is_file()
  assert (tmp_path / 'runs' / 'domainbed.md').read_text().count('ERM') >= 2
  assert (tmp_path / 'runs' / 'erm_pp.png').is_file()


def test_frozen_bn_forward_uses_and_keeps_the_running_statistics():
  config = _bn_config()
  config.erm_pp.freeze_bn = True
  task = build_task(config, DataInfo(10, (8, 8, 1), 64))
  params, model_state = task.init_variables(jax.random.key(0))
  model_state = jax.tree.map(lambda s: s + 0.5, model_state)  # Statistics that are not 0 / 1.
  images = jax.random.uniform(jax.random.key(1), (4, 8, 8, 1))
  logits, new_state = jax.jit(task.forward)(params, model_state, {'image': images},
                                            jax.random.key(2))
  expected = task.model.apply({'params': params, **model_state}, images, train=False)
  np.testing.assert_allclose(logits, expected, rtol=1e-5, atol=1e-6)
  for a, b in zip(jax.tree.leaves(new_state), jax.tree.leaves(model_state)):
    np.testing.assert_array_equal(a, b)
