"""Nothing lost, ever: faults and bad inputs end in one clear error and leave good results intact.

NaN guard on the whole state, failed and unwritable checkpoint saves, config.json only for
compatible runs, mismatched resumes, the workdir lock, bad data files and labels, failing config
files, metrics after a resume, the file cache's permissions and the DomainBed selection CLI.
As root, permission bits do not stop writes, so write failures are made real (a file in the way)
or injected.
"""

import gzip
import json
import logging
import os
import stat
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxcv import checkpoint as checkpoint_lib
from jaxcv import config as config_lib
from jaxcv import optim
from jaxcv import train
from jaxcv.data import cache, registry
from jaxcv.data.dataset import ArrayDataset
from jaxcv.domain_generalization import selection
from jaxcv.errors import (CheckpointError, ConfigError, NonFiniteLossError, UserError,
                          WorkdirLockedError)

from conftest import REPO_ROOT

TINY = str(REPO_ROOT / 'tests' / 'configs' / 'tiny.py')
EVERY_STEP = ['checkpoint_every_steps=1', 'log_every_steps=1', 'keep_checkpoints=2']


def tiny(overrides=(), arg=''):
  return config_lib.load(TINY + (f':{arg}' if arg else ''), list(overrides))


def narrow(overrides=()):
  """The tiny config with a narrower model: its checkpoints do not fit the default one."""
  config = tiny(overrides)
  config.unlock()
  config.model.kwargs.width = 4
  return config


def saved_steps(workdir):
  return sorted(int(p.name) for p in (workdir / 'checkpoints').iterdir() if p.name.isdigit())


def all_finite(tree):
  return all(np.isfinite(np.asarray(x)).all() for x in jax.tree.leaves(tree)
             if np.issubdtype(np.asarray(x).dtype, np.floating))


def _cli(*args, timeout=180):
  return subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=REPO_ROOT,
                        timeout=timeout, env={**os.environ, 'JAXCV_CACHE_DIR': 'off'})


# ---------------------------------------------------------------------------------------------
# 1. The NaN guard looks at the gradient norm, the parameters and the optimizer state
# ---------------------------------------------------------------------------------------------

def _nan_floats(tree):
  return jax.tree.map(lambda x: x * jnp.nan if jnp.issubdtype(x.dtype, jnp.floating) else x, tree)


def _poison_params(monkeypatch):
  """Every update leaves NaN parameters; the loss of that step is still finite."""
  monkeypatch.setattr(optax, 'apply_updates', lambda params, updates: _nan_floats(params))


def _poison_opt_state(monkeypatch):
  """Every update leaves a NaN optimizer state (the parameters stay finite for that step)."""
  build = optim.build_optimizer

  def poisoned(*args, **kwargs):
    tx = build(*args, **kwargs)

    def update(grads, state, params=None):
      updates, state = tx.update(grads, state, params)
      return updates, _nan_floats(state)
    return optax.GradientTransformation(tx.init, update)
  monkeypatch.setattr(optim, 'build_optimizer', poisoned)


@pytest.mark.parametrize('poison', [_poison_params, _poison_opt_state])
def test_non_finite_state_is_never_checkpointed(tmp_path, monkeypatch, poison):
  train.run(tiny(['total_steps=2', *EVERY_STEP]), str(tmp_path))
  poison(monkeypatch)
  with pytest.raises(NonFiniteLossError, match=r'last good: 2\)'):
    train.run(tiny(['total_steps=6', *EVERY_STEP]), str(tmp_path))
  assert saved_steps(tmp_path) == [1, 2]  # Not rotated out by non-finite ones.
  for step in (1, 2):
    raw, _ = checkpoint_lib.load_pretrained(str(tmp_path / 'checkpoints' / str(step)))
    assert all_finite(raw['params']) and all_finite(raw['opt_state'])


def test_non_finite_gradient_norm_stops_the_run(tmp_path, monkeypatch):
  monkeypatch.setattr(optax.tree, 'norm', lambda tree, *a, **k: jnp.float32(jnp.inf))
  with pytest.raises(NonFiniteLossError, match='gradient norm became inf'):
    train.run(tiny(['total_steps=6', *EVERY_STEP]), str(tmp_path))
  assert not (tmp_path / 'checkpoints').is_dir() or saved_steps(tmp_path) == []


# ---------------------------------------------------------------------------------------------
# 2. Checkpoint saves: unwritable places fail before training; a failed save ends the process
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize('blocked', ['checkpoints', 'workdir'])
def test_unwritable_checkpoint_place_fails_before_training(tmp_path, blocked):
  workdir = tmp_path / 'run'
  if blocked == 'checkpoints':
    workdir.mkdir()
    (workdir / 'checkpoints').write_text('a file where the checkpoint folder goes')
  else:
    tmp_path.joinpath('file').write_text('')
    workdir = tmp_path / 'file' / 'run'  # Below a file: nothing can be created there.
  with pytest.raises(UserError, match='not writable'):
    train.run(tiny(['total_steps=3']), str(workdir))
  assert not (workdir / 'metrics.jsonl').exists()


_FAILING_SAVE = """
import sys
from orbax.checkpoint._src.path import atomicity
cls = atomicity.AtomicRenameTemporaryPath
original = getattr(cls, sys.argv[1])
async def failing(self, *args, **kwargs):
  if str(getattr(self, '_final_path', '')).endswith('/10'):
    raise PermissionError(13, 'Permission denied', str(self._final_path))
  return await original(self, *args, **kwargs)
setattr(cls, sys.argv[1], failing)
from jaxcv import main
sys.exit(main.main(sys.argv[2:]))
"""


@pytest.mark.parametrize('stage', ['create', 'finalize'])
def test_a_save_failing_mid_way_ends_the_process_and_keeps_the_previous_checkpoint(tmp_path,
                                                                                      stage):
  atomicity = pytest.importorskip('orbax.checkpoint._src.path.atomicity')
  if not hasattr(getattr(atomicity, 'AtomicRenameTemporaryPath', None), stage):
    pytest.skip('this orbax has no AtomicRenameTemporaryPath.' + stage)
  result = _cli('-c', _FAILING_SAVE, stage, '--config', f'{TINY}:steps=10', '--workdir',
                str(tmp_path), timeout=120)  # A hang fails here (TimeoutExpired).
  lines = [l for l in result.stderr.splitlines() if l.strip()]
  assert result.returncode == 2, result.stderr[-3000:]
  assert lines[-1].startswith('error:') and 'step 10' in lines[-1], lines[-1]
  assert sum(l.startswith('error:') for l in lines) == 1
  assert checkpoint_lib.load_pretrained(str(tmp_path))[1] == 5
  summary = train.run(tiny(['total_steps=10']), str(tmp_path))  # Resumes from 5.
  assert summary['steps'] == 10 and saved_steps(tmp_path) == [5, 10]


# ---------------------------------------------------------------------------------------------
# 3, 4. config.json only for compatible runs; a mismatched resume names the parameter
# ---------------------------------------------------------------------------------------------

def test_config_json_survives_runs_that_fail_and_is_written_atomically(tmp_path, monkeypatch):
  train.run(tiny(['total_steps=3']), str(tmp_path))
  original = (tmp_path / 'config.json').read_text()
  with pytest.raises(UserError):
    train.run(tiny(['total_steps=6', 'data.name=nope']), str(tmp_path))
  with pytest.raises(UserError):
    train.run(narrow(['total_steps=6']), str(tmp_path))
  assert (tmp_path / 'config.json').read_text() == original
  replaced = []
  real_replace = os.replace
  monkeypatch.setattr(os, 'replace', lambda a, b: (replaced.append(str(b)), real_replace(a, b)))
  train.run(tiny(['total_steps=6']), str(tmp_path))
  assert str(tmp_path / 'config.json') in replaced
  assert json.loads((tmp_path / 'config.json').read_text())['total_steps'] == 6


def test_resume_with_another_model_names_the_first_differing_parameter(tmp_path, caplog):
  train.run(tiny(['total_steps=3']), str(tmp_path))
  with caplog.at_level(logging.WARNING), pytest.raises(CheckpointError) as error:
    train.run(narrow(['total_steps=6']), str(tmp_path))
  message = str(error.value)
  assert 'does not match' in message
  assert 'params/bn1/bias has shape (4,) here but (32,) in the checkpoint' in message
  assert 'init_checkpoint' in message and 'workdir' in message
  assert 'could be read' not in message and 'unreadable' not in caplog.text
  assert saved_steps(tmp_path) == [3]  # Nothing set aside or renamed.


# ---------------------------------------------------------------------------------------------
# 5. One run per workdir
# ---------------------------------------------------------------------------------------------

_HOLD_LOCK = """
import sys, time
from jaxcv import workdir
with workdir.lock(sys.argv[1]):
  print('locked', flush=True)
  time.sleep(120)
"""


def test_second_run_on_a_workdir_names_the_holder_and_stale_locks_do_not_block(tmp_path):
  holder = subprocess.Popen([sys.executable, '-c', _HOLD_LOCK, str(tmp_path)], cwd=REPO_ROOT,
                            stdout=subprocess.PIPE, text=True)
  try:
    assert holder.stdout.readline().strip() == 'locked'
    with pytest.raises(WorkdirLockedError, match=f'pid {holder.pid} on '):
      train.run(tiny(['total_steps=2']), str(tmp_path))
  finally:
    holder.kill()
    holder.wait()
  assert (tmp_path / '.lock').is_file()  # Left by the killed holder: stale, and no obstacle.
  assert train.run(tiny(['total_steps=2']), str(tmp_path))['steps'] == 2


# ---------------------------------------------------------------------------------------------
# 6, 7. Bad data files and labels
# ---------------------------------------------------------------------------------------------

def _png(path, size=4):
  from PIL import Image  # pylint: disable=g-import-not-at-top
  Image.fromarray(np.zeros((size, size, 3), np.uint8)).save(path)


def _folder(root, bad=None):
  for label in ('a', 'b'):
    (root / 'train' / label).mkdir(parents=True)
    for i in range(2):
      _png(root / 'train' / label / f'{i}.png')
  if bad is not None:
    (root / 'train' / 'b' / '9.png').write_bytes(bad)
  return root / 'train' / 'b' / '9.png'


def _tar(root, damage):
  import tarfile  # pylint: disable=g-import-not-at-top
  _folder(root / 'tree')
  path = root / 'data.tar.gz'
  with tarfile.open(path, 'w:gz') as tar:
    tar.add(root / 'tree' / 'train', arcname='train')
  data = path.read_bytes()
  path.write_bytes(damage(data))
  return path


def _npz(root, images, labels, **extra):
  path = root / 'train.npz'
  np.savez(path, images=images, labels=labels, **extra)
  return path


IMAGES = np.zeros((4, 4, 4, 3), np.uint8)


@pytest.mark.parametrize('make, kind', [
    (lambda r: (_folder(r, b'not an image'),) * 2, 'folder'),
    (lambda r: (_folder(r, b''),) * 2, 'folder'),
    (lambda r: (_tar(r, lambda d: d[:len(d) // 2]),) * 2, 'tar'),
    (lambda r: (_tar(r, lambda d: gzip.compress(b'garbage' * 100)),) * 2, 'tar'),
    (lambda r: (_tar(r, lambda d: b'\x00\x01garbage' * 100),) * 2, 'tar'),
    (lambda r: (_npz(r, IMAGES, np.zeros(3, np.int32)),) * 2, 'npz'),
    (lambda r: (_npz(r, IMAGES, np.zeros((4, 2), np.int32)),) * 2, 'npz'),
    (lambda r: (_npz(r, IMAGES, np.array([0, 1, -1, 0])),) * 2, 'npz'),
    (lambda r: (_npz(r, IMAGES, np.array([0, 1, 2, 0]), class_names=['x', 'y']),) * 2, 'npz'),
    (lambda r: ((r / 'train.npz').write_bytes(b'PK\x03\x04broken'), r / 'train.npz'), 'npz'),
], ids=['garbage-image', 'empty-image', 'truncated-tar', 'gzipped-garbage', 'garbage-tar',
        'lengths-differ', 'labels-rank-2', 'negative-label', 'label-beyond-classes',
        'broken-npz'])
def test_bad_data_files_are_one_error_naming_the_file(tmp_path, monkeypatch, make, kind):
  monkeypatch.setenv('JAXCV_CACHE_DIR', 'off')
  _, bad_file = make(tmp_path)
  name = {'folder': f'folder:{tmp_path}', 'tar': f'tar:{tmp_path / "data.tar.gz"}',
          'npz': f'npz:{tmp_path}'}[kind]
  with pytest.raises(UserError) as error:
    registry.load_dataset(name, 'train')
  assert str(bad_file) in str(error.value) or bad_file.name in str(error.value), error.value


def test_labels_are_validated_where_a_dataset_is_made():
  with pytest.raises(UserError, match=r'labels outside 0\.\.1.*-1.*my source'):
    ArrayDataset(IMAGES, np.array([0, 1, -1, 1]), ['a', 'b'], source='my source')
  with pytest.raises(UserError, match='2 classes'):
    ArrayDataset(IMAGES, np.array([0, 1, 2, 1]), ['a', 'b'])
  with pytest.raises(UserError, match='labels'):
    ArrayDataset(IMAGES, np.zeros((4, 2), np.int32), ['a', 'b'])
  # Segmentation label maps may hold the ignore index beyond the classes.
  maps = np.full((4, 4, 4), 7, np.int32)
  maps[:, 0] = 1
  assert len(ArrayDataset(IMAGES, maps, ['a', 'b'], ignore_index=7)) == 4
  with pytest.raises(UserError, match='labels outside'):
    ArrayDataset(IMAGES, maps, ['a', 'b'], ignore_index=255)


# ---------------------------------------------------------------------------------------------
# 8. Config files that fail
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize('body, line, message', [
    ('def get_config(arg):\n  return (\n', 2, 'SyntaxError'),
    ('import os\nimport not_a_module_anywhere\n', 2, 'not_a_module_anywhere'),
    ('def get_config(arg):\n  x = 1\n  return 1 / 0\n', 3, 'ZeroDivisionError'),
    ('def get_config(arg):\n  return {"seed": 0}\n', None, 'returned dict'),
])
def test_failing_config_files_are_one_error_with_file_and_line(tmp_path, body, line, message):
  path = tmp_path / 'bad_config.py'
  path.write_text(body)
  with pytest.raises(ConfigError, match=message) as error:
    config_lib.load(str(path))
  if line is not None:
    assert f'{path}:{line}' in str(error.value)
  assert '\n' not in str(error.value)


# ---------------------------------------------------------------------------------------------
# 9. Metrics after a resume, cache permissions, DomainBed selection, the sample script
# ---------------------------------------------------------------------------------------------

def test_resume_drops_metrics_rows_past_the_restored_step(tmp_path):
  train.run(tiny(['total_steps=10']), str(tmp_path))
  # As if the run had been killed before its step-10 checkpoint: rows for 6..10 remain.
  os.rename(tmp_path / 'checkpoints' / '10', tmp_path / 'elsewhere')
  train.run(tiny(['total_steps=10']), str(tmp_path))
  rows = [json.loads(l) for l in open(tmp_path / 'metrics.jsonl')]
  # One training row per logged step and one evaluation at the end, as in an unbroken run.
  assert [(r['step'], 'train/loss' in r) for r in rows] == [(5, True), (10, True), (10, False)]


def test_cache_writes_entries_others_can_read_and_skips_unreadable_ones(tmp_path, monkeypatch):
  old = os.umask(0o022)
  try:
    path = cache.keyed_path(tmp_path / 'cache', 'entry', {'k': 1})
    value = cache.cached_file(path, lambda: np.arange(3), load=np.load,
                              write=lambda v, p: np.save(open(p, 'wb'), v), what='test')
  finally:
    os.umask(old)
  assert stat.S_IMODE(path.stat().st_mode) == 0o644
  assert stat.S_IMODE(path.parent.stat().st_mode) == 0o755

  # Another user's entry: unreadable to us, and not ours to delete or replace.
  def unreadable(p):
    raise PermissionError(13, 'Permission denied', str(p))

  def not_ours(*args, **kwargs):
    raise PermissionError(13, 'Operation not permitted')
  monkeypatch.setattr(type(path), 'unlink', not_ours)
  monkeypatch.setattr(os, 'replace', not_ours)
  again = cache.cached_file(path, lambda: np.arange(3) + 1, load=unreadable,
                            write=lambda v, p: np.save(open(p, 'wb'), v), what='test')
  np.testing.assert_array_equal(again, np.arange(3) + 1)
  np.testing.assert_array_equal(value, np.arange(3))


def test_selection_cli_missing_root_is_an_error_and_foreign_runs_are_skipped(tmp_path, capsys,
                                                                               caplog):
  assert selection.main([str(tmp_path / 'missing')]) == 2
  assert 'error:' in capsys.readouterr().err
  config = config_lib.base_config()
  config.data.name = 'domainbed(test=3,seed=2):pacs'
  rows = [{'step': 10, 'val/acc/mean': .5, 'test_in/acc/mean': .4, 'test_in/acc/sketch': .4}]
  (tmp_path / 'dg').mkdir()
  (tmp_path / 'dg' / 'config.json').write_text(config.to_json())
  (tmp_path / 'dg' / 'metrics.jsonl').write_text(json.dumps(rows[0]) + '\n')
  (tmp_path / 'other').mkdir()  # A plain classification run under the same root.
  (tmp_path / 'other' / 'metrics.jsonl').write_text(json.dumps({'step': 5, 'train/loss': 1}) + '\n')
  with caplog.at_level(logging.WARNING):
    assert selection.main([str(tmp_path)]) == 0
  assert '1 runs' in capsys.readouterr().out
  assert 'other' in caplog.text and 'skipp' in caplog.text


def test_sample_script_has_no_hard_coded_source(tmp_path):
  script = str(REPO_ROOT / 'scripts' / 'make_cifar10_sample.py')
  text = open(script).read()
  assert 'shared' not in text.split('"""', 2)[2]  # No machine-specific path in the code.
  result = _cli(script, '--source', str(tmp_path / 'missing.tar.gz'), '--out',
                str(tmp_path / 'out.tar.gz'), timeout=60)
  assert result.returncode == 2 and 'missing.tar.gz' in result.stderr
  assert 'Traceback' not in result.stderr
