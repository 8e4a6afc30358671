"""A real multi-process run on one CPU machine: two processes joined by jax.distributed (a local
coordinator, gloo collectives), four devices each, train, checkpoint, resume, and end where one
process with eight devices ends. Also: one process logs, one `error:` line, one cache write."""

import os
import socket
import subprocess
import sys
from pathlib import Path

import chex
import numpy as np
import pytest
from PIL import Image

from conftest import REPO_ROOT
from jaxcv import checkpoint, config as config_lib, train

pytestmark = pytest.mark.multiprocess

TINY = str(REPO_ROOT / 'tests' / 'configs' / 'tiny.py')
# A worker is jaxcv.main, with the dataset cache's writes recorded (to count them).
WORKER = '''
import os, sys
from jaxcv.data import cache
write = cache._write_atomically
def counted(path, fn):
  with open(os.environ['WRITES_LOG'], 'a') as f:
    f.write(f'{os.getpid()} {path.name}\\n')
  write(path, fn)
cache._write_atomically = counted
from jaxcv import main
sys.exit(main.main())
'''


def _image_folder(root: Path) -> Path:
  """folder:ROOT with train/test splits of 4 classes of 8x8 images (decoded once, then cached)."""
  rng = np.random.default_rng(0)
  for split, per_class in (('train', 16), ('test', 8)):
    for label in range(4):
      folder = root / split / f'class{label}'
      folder.mkdir(parents=True)
      for i in range(per_class):
        pixels = rng.integers(0, 64, (8, 8, 3)) + 48 * label
        Image.fromarray(pixels.astype(np.uint8)).save(folder / f'{i}.png')
  return root


def _overrides(data: Path, steps: int) -> list[str]:
  # A constant learning rate: the 5-step first part and its 10-step resumption follow the same
  # schedule as one 10-step run.
  return [f'data.name=folder:{data}', 'data.augment=', f'total_steps={steps}',
          'schedule.name=constant', 'schedule.warmup_steps=0', 'evals.test.batch_size=32',
          'async_checkpointing=false']


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


def _two_processes(tmp_path: Path, workdir: Path, overrides: list[str], config: str = TINY):
  """Runs jaxcv.main as processes 0 and 1 of one job; returns [(returncode, stdout, stderr)]."""
  port = _free_port()
  env = {**os.environ, 'JAX_PLATFORMS': 'cpu', 'JAXCV_CACHE_DIR': str(tmp_path / 'cache'),
         'WRITES_LOG': str(tmp_path / 'writes.log'), 'PYTHONPATH': str(REPO_ROOT)}
  env.pop('XLA_FLAGS', None)
  processes = [subprocess.Popen(
      [sys.executable, '-c', WORKER, '--config', config, '--workdir', str(workdir),
       '--distributed', '--coordinator_address', f'127.0.0.1:{port}', '--num_processes', '2',
       '--process_id', str(i), '--cpu_devices', '4', *[f'--config.{o}' for o in overrides]],
      env=env, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
      for i in range(2)]
  results = []
  for p in processes:
    try:
      out, err = p.communicate(timeout=240)
    except subprocess.TimeoutExpired:
      for q in processes:
        q.kill()
      raise
    results.append((p.returncode, out, err))
  return results


def _params(workdir: Path):
  raw, step = checkpoint.load_pretrained(str(workdir))
  return raw['params'], step


def test_two_processes_train_resume_and_match_one_process(tmp_path):
  data = _image_folder(tmp_path / 'data')
  job = tmp_path / 'job'
  first = _two_processes(tmp_path, job, _overrides(data, 5))
  assert [r[0] for r in first] == [0, 0], first
  resumed = _two_processes(tmp_path, job, _overrides(data, 10))
  assert [r[0] for r in resumed] == [0, 0], resumed
  (_, out0, err0), (_, out1, err1) = resumed
  assert 'resumed from step 5' in err0 + out0
  # Process 0 logs (a line per log step) and prints the summary; process 1 stays quiet.
  assert 'step 10: loss' in err0 + out0 and 'test/accuracy' in out0
  assert 'step 10: loss' not in err1 + out1 and 'test/accuracy' not in out1
  # The dataset cache (train and test split) was written by one process, once.
  writes = (tmp_path / 'writes.log').read_text().split('\n')
  writers = {line.split()[0] for line in writes if line}
  assert len([w for w in writes if w]) == 2 and len(writers) == 1, writes

  single = tmp_path / 'single'
  config = config_lib.load(TINY, _overrides(data, 10))
  train.run(config, str(single))  # 8 devices in this process (conftest).
  ours, step = _params(job)
  theirs, single_step = _params(single)
  assert step == single_step == 10
  chex.assert_trees_all_close(ours, theirs, rtol=1e-4, atol=1e-5)


def test_two_processes_report_one_error_line(tmp_path):
  results = _two_processes(tmp_path, tmp_path / 'job', ['batch_size=-1'])
  assert [r[0] for r in results] == [2, 2]
  errors = [line for _, _, err in results for line in err.splitlines()
            if line.startswith('error:')]
  assert len(errors) == 1 and 'batch_size' in errors[0], results
