"""The loop end to end on tiny synthetic data: learning, sharding equivalence, checkpoints,
resume after SIGKILL, corrupt-checkpoint fallback, NaN handling and evaluation-only runs."""

import json
import logging
import os
import signal
import subprocess
import sys
import time

import chex
import jax
import numpy as np
import pytest

from jaxcv import checkpoint as checkpoint_lib
from jaxcv import config as config_lib
from jaxcv import train
from jaxcv.errors import CheckpointError, NonFiniteLossError

from conftest import REPO_ROOT

TINY = str(REPO_ROOT / 'tests' / 'configs' / 'tiny.py')


def tiny(overrides=(), arg=''):
  return config_lib.load(TINY + (f':{arg}' if arg else ''), list(overrides))


def final_params(workdir):
  raw, step = checkpoint_lib.load_pretrained(str(workdir))
  return raw['params'], step


def test_learns_and_writes_outputs(tmp_path):
  config = tiny(['total_steps=60', 'plot=true'])
  summary = train.run(config, str(tmp_path))
  assert summary['test/accuracy'] > 0.8  # 4 classes: chance is 0.25.
  assert summary['steps'] == 60
  records = [json.loads(line) for line in open(tmp_path / 'metrics.jsonl')]
  losses = [r['train/loss'] for r in records if 'train/loss' in r]
  assert len(losses) == 12 and losses[-1] < losses[0]
  assert all('examples_per_sec' in r for r in records if 'train/loss' in r)
  assert (tmp_path / 'metrics.png').stat().st_size > 1000
  assert json.load(open(tmp_path / 'summary.json'))['test/accuracy'] == summary['test/accuracy']


@pytest.mark.parametrize('model', ['small_cnn', 'resnet_tiny'])
def test_eight_devices_match_one(tmp_path, model):
  config = tiny(['total_steps=6'], arg=f'model={model}')
  one = train.run(config, str(tmp_path / 'one'), devices=jax.devices()[:1])
  eight = train.run(config, str(tmp_path / 'eight'))
  assert eight['devices'].startswith('8 x') and one['devices'].startswith('1 x')
  params_one, _ = final_params(tmp_path / 'one')
  params_eight, _ = final_params(tmp_path / 'eight')
  chex.assert_trees_all_close(params_one, params_eight, rtol=2e-4, atol=2e-5)
  assert abs(one['test/loss'] - eight['test/loss']) < 1e-4


def test_fsdp_sharding_matches_replicated(tmp_path):
  replicated = tiny(['total_steps=4'])
  sharded = tiny(['total_steps=4', 'mesh.data=2', 'mesh.fsdp=4'])
  sharded.unlock()
  sharded.param_sharding = (('kernel', 'fsdp'), ('.*', 'replicate'))
  train.run(replicated, str(tmp_path / 'r'))
  train.run(sharded, str(tmp_path / 's'))
  chex.assert_trees_all_close(final_params(tmp_path / 'r')[0], final_params(tmp_path / 's')[0],
                              rtol=2e-4, atol=2e-5)


def test_resume_continues_the_same_run(tmp_path):
  # A constant schedule, so that a 10-step run is the first half of a 20-step one.
  constant = ['schedule.name=constant', 'schedule.warmup_steps=0']
  straight = tmp_path / 'straight'
  train.run(tiny(['total_steps=20', *constant]), str(straight))
  split = tmp_path / 'split'
  train.run(tiny(['total_steps=10', *constant]), str(split))
  summary = train.run(tiny(['total_steps=20', *constant]), str(split))
  assert summary['steps'] == 20
  chex.assert_trees_all_close(final_params(straight)[0], final_params(split)[0],
                              rtol=1e-5, atol=1e-6)


def test_streaming_loader_learns_and_resumes_exactly(tmp_path):
  streaming = ['data.loader=streaming', 'schedule.name=constant', 'schedule.warmup_steps=0']
  straight = train.run(tiny(['total_steps=40', *streaming]), str(tmp_path / 'straight'))
  assert straight['test/accuracy'] > 0.6
  train.run(tiny(['total_steps=25', *streaming]), str(tmp_path / 'split'))
  train.run(tiny(['total_steps=40', *streaming]), str(tmp_path / 'split'))
  chex.assert_trees_all_close(final_params(tmp_path / 'straight')[0],
                              final_params(tmp_path / 'split')[0], rtol=1e-5, atol=1e-6)


def test_streaming_from_an_image_folder_decodes_lazily(tmp_path):
  from PIL import Image  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(0)
  for split, count in (('train', 48), ('test', 16)):
    for label, colour in enumerate(((255, 0, 0), (0, 0, 255))):
      folder = tmp_path / 'data' / split / f'class{label}'
      folder.mkdir(parents=True)
      for i in range(count // 2):
        size = int(rng.integers(10, 20))  # Mixed sizes: image_size resizes them.
        pixels = np.clip(np.array(colour) + rng.normal(0, 30, (size, size, 3)), 0, 255)
        Image.fromarray(pixels.astype(np.uint8)).save(folder / f'{i}.png')
  summary = train.run(tiny([f'data.name=folder:{tmp_path / "data"}', 'data.loader=streaming',
                            'data.image_size=8', 'total_steps=15', 'batch_size=16']),
                      str(tmp_path / 'run'))
  assert summary['steps'] == 15 and summary['test/accuracy'] > 0.9


def test_resume_onto_a_different_device_count(tmp_path):
  train.run(tiny(['total_steps=5']), str(tmp_path))  # Saved from 8 devices.
  summary = train.run(tiny(['total_steps=10']), str(tmp_path), devices=jax.devices()[:1])
  assert summary['steps'] == 10


STEPS = 1500


def _run_cli(workdir):
  workdir.mkdir(parents=True, exist_ok=True)
  log = open(workdir / 'log.txt', 'a')  # A file, not a pipe: a full pipe would block the run.
  return subprocess.Popen(
      [sys.executable, '-m', 'jaxcv.main', '--config', f'{TINY}:steps={STEPS}', '--workdir',
       str(workdir), '--config.checkpoint_every_steps=100', '--config.log_every_steps=100'],
      cwd=REPO_ROOT, stdout=log, stderr=log)


def _log(workdir):
  return (workdir / 'log.txt').read_text()[-3000:]


def test_sigkill_then_restart_reaches_the_same_parameters(tmp_path):
  killed = tmp_path / 'killed'
  process = _run_cli(killed)
  ckpt_dir = killed / 'checkpoints'
  deadline = time.time() + 240
  while time.time() < deadline:
    if ckpt_dir.is_dir() and any(p.name.isdigit() for p in ckpt_dir.iterdir()):
      break
    assert process.poll() is None, _log(killed)
    time.sleep(0.02)
  process.send_signal(signal.SIGKILL)
  process.wait()
  saved = sorted(int(p.name) for p in ckpt_dir.iterdir() if p.name.isdigit())
  assert saved and saved[-1] < STEPS, 'the run finished before it could be killed'
  restarted = _run_cli(killed)
  assert restarted.wait(timeout=300) == 0, _log(killed)
  assert f'resumed from step {saved[-1]}' in (killed / 'log.txt').read_text()
  straight = _run_cli(tmp_path / 'straight')
  assert straight.wait(timeout=300) == 0, _log(tmp_path / 'straight')
  params_killed, step_killed = final_params(killed)
  params_straight, step_straight = final_params(tmp_path / 'straight')
  assert step_killed == step_straight == STEPS
  chex.assert_trees_all_close(params_killed, params_straight, rtol=1e-5, atol=1e-6)


def _corrupt(step_dir):
  for root, _, files in os.walk(step_dir / 'state'):
    for name in files:
      with open(os.path.join(root, name), 'wb') as f:
        f.write(b'garbage')


def test_corrupt_latest_checkpoint_falls_back_to_previous(tmp_path, caplog):
  train.run(tiny(['total_steps=10']), str(tmp_path))
  _corrupt(tmp_path / 'checkpoints' / '10')
  with caplog.at_level(logging.WARNING):
    summary = train.run(tiny(['total_steps=15']), str(tmp_path))
  assert summary['steps'] == 15
  assert any('step 10' in r.message and 'unreadable' in r.message for r in caplog.records)
  assert (tmp_path / 'checkpoints' / '10.unreadable').is_dir()  # Kept, not deleted.
  assert (tmp_path / 'checkpoints' / '15').is_dir()


def test_all_checkpoints_corrupt_is_a_clear_error(tmp_path):
  train.run(tiny(['total_steps=5', 'keep_checkpoints=1']), str(tmp_path))
  _corrupt(tmp_path / 'checkpoints' / '5')
  with pytest.raises(CheckpointError, match='could be read'):
    train.run(tiny(['total_steps=10']), str(tmp_path))
  assert (tmp_path / 'checkpoints' / '5').is_dir()  # Left for the user to inspect.


def test_nan_loss_stops_without_overwriting_checkpoints(tmp_path):
  train.run(tiny(['total_steps=10']), str(tmp_path))
  good_params, _ = final_params(tmp_path)
  with pytest.raises(NonFiniteLossError, match='last good: 10'):
    train.run(tiny(['total_steps=30', 'schedule.lr=1e30', 'schedule.warmup_steps=0']),
              str(tmp_path))
  params, step = final_params(tmp_path)
  assert step == 10
  chex.assert_trees_all_close(params, good_params, rtol=0, atol=0)


def test_evaluation_only_run_from_init_checkpoint(tmp_path):
  trained = train.run(tiny(['total_steps=30']), str(tmp_path / 'train'))
  evaluated = train.run(tiny(['total_steps=0', f'init_checkpoint={tmp_path / "train"}']),
                        str(tmp_path / 'eval'))
  assert evaluated['steps'] == 0
  assert evaluated['test/accuracy'] == pytest.approx(trained['test/accuracy'], abs=1e-6)


def test_init_checkpoint_of_another_model_is_rejected(tmp_path):
  train.run(tiny(['total_steps=2']), str(tmp_path / 'cnn'))
  with pytest.raises(Exception, match='do not match this model'):
    train.run(tiny(['total_steps=0', f'init_checkpoint={tmp_path / "cnn"}'],
                   arg='model=resnet_tiny'), str(tmp_path / 'resnet'))


def test_ema_parameters_are_evaluated(tmp_path):
  summary = train.run(tiny(['total_steps=20', 'ema_decay=0.9']), str(tmp_path))
  raw, _ = checkpoint_lib.load_pretrained(str(tmp_path))
  assert raw['ema_params'] is not None
  assert 0.0 <= summary['test/accuracy'] <= 1.0
