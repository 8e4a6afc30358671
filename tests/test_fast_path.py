"""The loop's fast path: k steps per call (lax.scan) equal k single steps, log/eval/checkpoint
boundaries survive it, the jaxcv step computes the same loss as a plain Flax step, the
data-dependent init hook, the optimizer pieces the fast recipe adds, and the benchmark
harness's table, profile and airbench-output parsing."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxcv import config as config_lib
from jaxcv import optim, parallel, train
from jaxcv.data import build_train_loader, open_train_data
from jaxcv.errors import ConfigError
from jaxcv.losses import cross_entropy

from conftest import REPO_ROOT

TINY = str(REPO_ROOT / 'tests' / 'configs' / 'tiny.py')


def tiny(overrides=()):
  return config_lib.load(TINY, ['progress_bar=false', *overrides])


def build(config):
  mesh = parallel.make_mesh(config.mesh, jax.devices()[:1])
  data, info = open_train_data(config)
  loader = build_train_loader(config, data, mesh)
  parts = train.build_parts(config, data, info, mesh, config.total_steps)
  step = train.build_train_step(config, parts.task, loader, parts.tx, parts.schedule, parts.rng)
  return mesh, loader, parts, step


def test_scan_of_k_steps_equals_k_single_steps_and_the_plain_loss():
  config = tiny(['total_steps=20', 'data.augment=', 'label_smoothing=0.1'])
  mesh, loader, parts, step = build(config)
  inputs = loader.inputs(0)
  with jax.set_mesh(mesh):
    first_batch = loader.get_batch(inputs, jnp.zeros((), jnp.int32))
    single = jax.jit(step)
    state, losses = parts.state, []
    for _ in range(4):
      state, metrics = single(state, inputs)
      losses.append(metrics['loss'])
    scanned_state, scanned_metrics = jax.jit(train.scan_steps(step, 4))(parts.state, inputs)
  assert int(scanned_state.step) == int(state.step) == 4
  assert scanned_metrics['loss'].shape == (4,)
  np.testing.assert_allclose(scanned_metrics['loss'], np.array(losses), rtol=1e-5, atol=1e-6)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6),
               state.params, scanned_state.params)
  assert float(jnp.abs(losses[0] - losses[-1])) > 0  # The steps really trained.
  # The loop's first loss is the plain Flax loss of the same batch and parameters.
  variables = {'params': parts.state.params, **parts.state.model_state}
  logits, _ = parts.task.model.apply(variables, first_batch['image'].astype(jnp.float32) / 255.0,
                                     train=True, mutable=list(parts.state.model_state))
  plain = jnp.mean(cross_entropy(logits, first_batch['label'], 0.1))
  np.testing.assert_allclose(losses[0], plain, rtol=1e-5)


def test_next_boundary():
  assert train._next_boundary(0, 100, 10, 0, 25) == 10
  assert train._next_boundary(20, 100, 10, 0, 25) == 25
  assert train._next_boundary(95, 97, 10) == 97


def test_steps_per_call_keeps_log_and_checkpoint_boundaries(tmp_path):
  config = tiny(['total_steps=10', 'log_every_steps=4', 'checkpoint_every_steps=5'])
  with config.unlocked():
    config.steps_per_call = 3
  summary = train.run(config, str(tmp_path), devices=jax.devices()[:1])
  assert summary['steps'] == 10
  logged = [json.loads(line)['step'] for line in open(tmp_path / 'metrics.jsonl')
            if 'train/loss' in line]
  assert logged == [4, 5, 8, 10]  # 5 is flushed for the checkpoint, as with one step per call.
  from jaxcv import checkpoint as checkpoint_lib
  saved = checkpoint_lib.Checkpointer(checkpoint_lib.checkpoint_dir(str(tmp_path))).steps()
  assert 10 in saved and 5 in saved


def test_steps_per_call_must_be_positive():
  config = tiny()
  with config.unlocked():
    config.steps_per_call = 0
  assert train.steps_per_call(config) == 1  # 0/None: the default.
  config.steps_per_call = -2
  with pytest.raises(ConfigError, match='steps_per_call'):
    train.steps_per_call(config)


def test_average_mixes_single_and_multi_step_entries():
  averaged = train._average([{'loss': np.float32(1.0)}, {'loss': np.array([2.0, 3.0, 6.0])}])
  assert averaged['loss'] == pytest.approx(3.0)


def test_prepare_passes_training_data_to_data_init(monkeypatch):
  from jaxcv.models.small import SmallCNN
  seen = {}

  def data_init(self, images):
    seen['shape'] = images.shape
    return {'params': {'head': {'bias': jnp.full((4,), 7.0)}}}

  monkeypatch.setattr(SmallCNN, 'data_init', data_init, raising=False)
  config = tiny(['total_steps=2'])
  _, _, parts, _ = build(config)
  assert seen['shape'] == (512, 8, 8, 3)
  np.testing.assert_array_equal(parts.state.params['head']['bias'], 7.0)
  with pytest.raises(ConfigError, match="data.loader='device'"):
    parts.task.prepare(None)


def test_triangle_schedule_matches_airbench():
  schedule = optim.triangle_schedule(100, 2.0, 0.2, 0.23, 0.07)
  xp, fp = [0, 23, 100], [0.2, 1.0, 0.07]
  for step in (0, 10, 23, 50, 99, 100):
    assert float(schedule(step)) == pytest.approx(2.0 * np.interp(step, xp, fp), rel=1e-5)


def _opt_config(**optimizer):
  config = config_lib.base_config()
  config.schedule.name = 'constant'
  config.schedule.lr = 0.5
  config.optimizer.momentum = 0.0
  config.optimizer.nesterov = False
  config.optimizer.weight_decay = 0.1
  for key, value in optimizer.items():
    config.optimizer[key] = value
  return config


def test_param_groups_scale_lr_and_weight_decay():
  config = _opt_config(param_groups=((r'norm/bias$', 4.0, 0.25),))
  tx = optim.build_optimizer(config, optim.build_schedule(config, 10))
  params = {'norm': {'bias': jnp.ones(2)}, 'conv': {'kernel': jnp.ones(2)}}
  grads = jax.tree.map(jnp.ones_like, params)
  updates, _ = tx.update(grads, tx.init(params), params)
  # Plain SGD: -lr * (g + wd * p); the group: -(4 lr) * (g + wd/4 * p).
  np.testing.assert_allclose(updates['conv']['kernel'], -0.5 * (1 + 0.1))
  np.testing.assert_allclose(updates['norm']['bias'], -2.0 * (1 + 0.025))


def test_freeze_after_stops_updates_at_the_step():
  config = _opt_config(freeze_after=(('bias', 2),))
  tx = optim.build_optimizer(config, optim.build_schedule(config, 10))
  params = {'bias': jnp.ones(2), 'kernel': jnp.ones(2)}
  state = tx.init(params)
  moved = []
  for _ in range(4):
    updates, state = tx.update(jax.tree.map(jnp.ones_like, params), state, params)
    moved.append(bool(jnp.any(updates['bias'] != 0)))
    assert bool(jnp.all(updates['kernel'] != 0))
  assert moved == [True, True, False, False]


# ------------------------------------------------------------------ the benchmark harness
def test_benchmark_tables_put_the_ratio_first(capsys):
  from benchmarks import common
  rows = common.add_ratios([{'name': 'ref', 'img_per_s': 100.0},
                            {'name': 'new', 'img_per_s': 150.0},
                            {'name': 'broken', 'error': 'Traceback\nValueError: bad'}],
                           'img_per_s', 'ref')
  assert [r['ratio'] for r in rows] == [1.0, 1.5, None]
  text = common.print_table(rows)
  header = text.splitlines()[0].split()
  assert header[:2] == ['ratio', 'name']
  assert 'ValueError: bad' in text and 'Traceback' not in text


def test_profile_summary_groups_device_kernels(tmp_path):
  import gzip
  from benchmarks import profile_summary
  events = [
      {'ph': 'M', 'pid': 1, 'name': 'process_name', 'args': {'name': '/device:GPU:0'}},
      {'ph': 'M', 'pid': 1, 'tid': 7, 'name': 'thread_name', 'args': {'name': 'Stream #7'}},
      {'ph': 'M', 'pid': 2, 'name': 'process_name', 'args': {'name': '/host:CPU'}},
      {'ph': 'X', 'pid': 1, 'tid': 7, 'ts': 0, 'dur': 60, 'name': 'sm90_xmma_fprop_conv'},
      {'ph': 'X', 'pid': 1, 'tid': 7, 'ts': 60, 'dur': 20, 'name': 'loop_add_fusion'},
      {'ph': 'X', 'pid': 1, 'tid': 7, 'ts': 100, 'dur': 20, 'name': 'sm90_xmma_fprop_conv'},
      {'ph': 'X', 'pid': 2, 'tid': 1, 'ts': 0, 'dur': 500, 'name': 'host work'},
  ]
  path = tmp_path / 'perfetto_trace.json.gz'
  with gzip.open(path, 'wt') as f:
    json.dump({'traceEvents': events}, f)
  summary = profile_summary.summarise(profile_summary.find_trace(str(tmp_path)), steps=2)
  assert summary['kind'] == 'gpu kernels'
  assert summary['busy_ms'] == pytest.approx(0.1)
  assert summary['idle_share'] == pytest.approx(1 - 100 / 120)
  top = summary['top_kernels'][0]
  assert (top['kernel'], top['calls'], top['category']) == ('sm90_xmma_fprop_conv', 2,
                                                           'convolution')
  shares = {c['category']: c['share'] for c in summary['categories']}
  assert shares == pytest.approx({'convolution': 0.8, 'elementwise fusion': 0.2})


def test_airbench_output_parser_reads_the_final_row():
  from benchmarks.fast_cifar10 import _parse_airbench_output
  # The table airbench's print_training_details writes (header, an epoch row, the final row).
  text = '\n'.join([
      '|  run     |  epoch  |  train_loss  |  train_acc  |  val_acc  |  tta_val_acc  |  '
      'total_time_seconds  |',
      '|       0  |      9  |      0.5000  |     0.9000  |   0.9300  |               |'
      '                      |',
      '|          |   eval  |              |             |           |       0.9412  |'
      '              2.3450  |'])
  assert _parse_airbench_output(text) == {'accuracy': 0.9412, 'seconds': 2.345}
  with pytest.raises(RuntimeError, match='no final airbench row'):
    _parse_airbench_output(text.rsplit('\n', 1)[0])
