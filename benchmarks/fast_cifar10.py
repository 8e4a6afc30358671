"""Time to accuracy on CIFAR-10: configs/fast_cifar10/airbench94.py vs PyTorch airbench94.

Both train on the same data (jaxcv's CIFAR-10 loader output, handed to airbench as its
`cifar10/{train,test}.pt` tensors) on the same GPU, in two processes run one after the other
(`--parallel 1`, the default; see `benchmarks/common.py`).

  airbench94  the `airbench` package (Keller Jordan), `train94` after `warmup94`; accuracy and
              seconds are the ones it prints itself: its clock covers whitening, training and
              the TTA evaluation, not the warmup run nor the per-epoch evaluations it prints.
  jaxcv       `jaxcv.fast.timed.TimedRunner`: the same span (whitening, every step, TTA
              evaluation), compilation done ahead of time outside the clock.

The ratio column is airbench's seconds / jaxcv's (> 1: jaxcv is faster); accuracy is the TTA
test accuracy. airbench must be importable (see scripts/gpu/perf.sh for the staged sdist).

  python -m benchmarks.fast_cifar10 --runs 2 --out $OUT/perf
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import statistics
import sys
import tempfile
import time

from benchmarks import common

CONFIG = 'configs/fast_cifar10/airbench94.py'
_AIRBENCH_COLUMNS = ['run', 'epoch', 'train_loss', 'train_acc', 'val_acc', 'tta_val_acc',
                     'total_time_seconds']


def _config(arg: str = ''):
  from jaxcv import config as config_lib
  overrides = ['progress_bar=false', 'plot=false']
  if common.smoke():
    arg = ','.join(filter(None, [arg, 'runlocal']))
    overrides.append('data.name=synthetic:n=256,size=32,classes=10')
  config = config_lib.load(CONFIG + (f':{arg}' if arg else ''), overrides)
  if common.smoke():
    with config.unlocked():
      config.model.kwargs.widths = (8, 16, 16)
  return config


def measure_jaxcv(runs: int, arg: str = '', name: str = 'jaxcv') -> list[dict]:
  from jaxcv.fast.timed import TimedRunner
  runner = TimedRunner(_config(arg))
  rows = []
  # The first run pays compilation outside its clock; later runs of other seeds compile again
  # (the seed is a constant of the program), also outside the clock.
  for i in range(runs):
    result = runner.run(seed=i, timed_section=common.gpu_lock)
    rows.append({'name': name, 'run': i, 'accuracy': result['test/accuracy'],
                 'seconds': result['seconds'], **{k: v for k, v in result.items()
                                                   if k.endswith('seconds')}})
  return rows


def _write_airbench_data(folder: str) -> str:
  """cifar10/{train,test}.pt as airbench's CifarLoader reads them, from jaxcv's loader."""
  import numpy as np
  import torch
  from jaxcv.data.registry import load_dataset
  path = os.path.join(folder, 'cifar10')
  os.makedirs(path, exist_ok=True)
  for split in ('train', 'test'):
    data = load_dataset('cifar10', split)
    torch.save({'images': torch.tensor(np.asarray(data.images)),
                'labels': torch.tensor(np.asarray(data.labels, np.int64)),
                'classes': list(data.class_names)}, os.path.join(path, f'{split}.pt'))
  return folder


def _parse_airbench_output(text: str) -> dict:
  """The final ('eval') row airbench prints: tta_val_acc and total_time_seconds."""
  for line in reversed(text.splitlines()):
    cells = [c.strip() for c in line.strip().strip('|').split('|')]
    if len(cells) == len(_AIRBENCH_COLUMNS) and cells[1] == 'eval':
      row = dict(zip(_AIRBENCH_COLUMNS, cells))
      return {'accuracy': float(row['tta_val_acc']),
              'seconds': float(row['total_time_seconds'])}
  raise RuntimeError('no final airbench row in its output:\n' + text[-2000:])


def measure_airbench(runs: int) -> list[dict]:
  import torch
  if not torch.cuda.is_available():
    raise SystemExit('airbench94 needs a CUDA GPU')
  import airbench
  folder = _write_airbench_data(tempfile.mkdtemp(prefix='airbench_'))
  os.chdir(folder)  # airbench reads its test set from ./cifar10.
  loader = airbench.CifarLoader('cifar10', train=True, batch_size=1024,
                                aug=dict(flip=True, translate=2), altflip=True)
  rows = []
  with contextlib.redirect_stdout(io.StringIO()):  # cuDNN autotuning: airbench's "compile".
    airbench.warmup94(train_loader=loader)
  with common.gpu_lock():
    for i in range(runs):
      out = io.StringIO()
      t0 = time.perf_counter()
      with contextlib.redirect_stdout(out):
        airbench.train94(train_loader=loader, run=i)
      torch.cuda.synchronize()
      wall = time.perf_counter() - t0
      print(out.getvalue(), flush=True)
      rows.append({'name': 'airbench94', 'run': i, **_parse_airbench_output(out.getvalue()),
                   'wall_with_epoch_evals_seconds': wall})
  return rows


def summarise(rows: list[dict]) -> list[dict]:
  """One row per method: mean accuracy and seconds; ratio = airbench seconds / these."""
  out = []
  for name in dict.fromkeys(r['name'] for r in rows):
    mine = [r for r in rows if r['name'] == name]
    ok = [r for r in mine if 'seconds' in r]
    if not ok:
      out.append({'name': name, 'error': mine[0].get('error', 'no result')[-300:]})
      continue
    out.append({'name': name, 'runs': len(ok),
                'accuracy': statistics.mean(r['accuracy'] for r in ok),
                'accuracy_min': min(r['accuracy'] for r in ok),
                'seconds': statistics.mean(r['seconds'] for r in ok),
                'seconds_min': min(r['seconds'] for r in ok),
                'train_seconds': statistics.mean(r.get('train_seconds', float('nan'))
                                                 for r in ok) if 'train_seconds' in ok[0]
                                 else None,
                'eval_seconds': statistics.mean(r['eval_seconds'] for r in ok)
                                if 'eval_seconds' in ok[0] else None})
  common.add_ratios(out, 'seconds', 'airbench94', higher_is_better=False)
  return out


ABLATIONS = {  # name -> config argument that removes one trick.
    'jaxcv_no_altflip': 'altflip=false',
    'jaxcv_no_lookahead': 'lookahead=false',
    'jaxcv_tta_flip_only': 'tta=flip',
    'jaxcv_no_tta': 'tta=none',
    'jaxcv_no_bias_scaler': 'bias_scaler=1.0',
}


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--out', default=common.out_dir())
  parser.add_argument('--runs', type=int, default=2)
  parser.add_argument('--parallel', type=int, default=1,
                      help='workers at once (>1 lets compilation disturb the other timings)')
  parser.add_argument('--timeout', type=float, default=150)
  parser.add_argument('--ablations', action='store_true',
                      help='also run the recipe with single tricks removed (jaxcv only)')
  parser.add_argument('--worker', help=argparse.SUPPRESS)
  parser.add_argument('--result', help=argparse.SUPPRESS)
  args = parser.parse_args(argv)

  if args.worker:
    if args.worker == 'airbench94':
      rows = measure_airbench(args.runs)
    else:
      rows = measure_jaxcv(args.runs, ABLATIONS.get(args.worker, ''), args.worker)
    common.worker_result(args.result, rows)
    return

  names = ['jaxcv']
  if common.torch_available() and not common.smoke():
    names.insert(0, 'airbench94')
  else:
    print('smoke run or no torch: airbench94 (CUDA only) is skipped', flush=True)
  if args.ablations:
    names += list(ABLATIONS)
  rows = common.run_workers('benchmarks.fast_cifar10', [{'name': n} for n in names],
                            parallel=args.parallel, timeout=args.timeout,
                            extra_args=['--runs', str(args.runs)])
  summary = summarise(rows)
  common.print_table(summary, ['ratio', 'name', 'accuracy', 'seconds', 'accuracy_min',
                               'seconds_min', 'train_seconds', 'eval_seconds', 'runs', 'error'],
                     title='CIFAR-10 time to accuracy (ratio = airbench94 seconds / seconds)')
  common.write_json(args.out, 'fast_cifar10', {'config': CONFIG, 'summary': summary,
                                               'runs': rows})


if __name__ == '__main__':
  sys.exit(main())
