"""Time to first step: a one-step training run of the single loop, in a fresh process, with the
persistent compilation cache cold (an empty cache folder: every program compiles) and then warm
(the same folder again: programs load from disk), for CIFAR ResNet-18 and the SD-1.5 UNet (c=320).

Each row is its own process (`python -m benchmarks.time_to_first_step --worker ...`) timed from
its start to the end of `jaxcv.train.run` (imports, data, initialisation, compilation, one step,
the final checkpoint): what a user waits before a run trains, and what every table row repeats.
The loop's own phase timings are read from its log.

  python -m benchmarks.time_to_first_step --out results/<date>_cpu_time_to_first_step
  python -m benchmarks.time_to_first_step --models resnet18 --out /tmp/ttfs    # one model

Data: synthetic images (no dataset files); evaluators off; batch 8 (ResNet-18, 32x32x3) and 1
(UNet, 32x32x3 pixels at c=320 with a 128-dim class context: SD-1.5's UNet body, CIFAR's input;
no EMA copy, so that parameters and AdamW state fit a 24 GB machine).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

from benchmarks import common

MODELS = {
    'resnet18': dict(config='configs/cifar10/resnet18.py', arg='dtype=float32', batch=8,
                     overrides=()),
    'sd_unet_c320': dict(config='configs/ldm_scaling/cifar10_unet.py',
                         arg='width=320,steps=1,dtype=float32,checkpoints=1,ema=0', batch=1,
                         overrides=('model.name=sd_unet', 'model.kwargs.num_groups=32')),
}
PHASE = re.compile(r'(\d\d:\d\d:\d\d) INFO (.*)')


def worker(name: str, workdir: str) -> None:
  """One one-step run of model `name` in `workdir` (this process is the one timed)."""
  from jaxcv import config as config_lib  # pylint: disable=import-outside-toplevel
  from jaxcv import train  # pylint: disable=import-outside-toplevel
  # The loop's phase lines, which the timing row keeps (force: jax's import set up a handler).
  logging.basicConfig(level=logging.INFO, format='%(asctime)s %(levelname)s %(message)s',
                      datefmt='%H:%M:%S', force=True)
  logging.getLogger('absl').setLevel(logging.WARNING)
  spec = MODELS[name]
  config = config_lib.load(f'{spec["config"]}:{spec["arg"]}', [
      'data.name=synthetic:n=64,size=32,classes=10', f'batch_size={spec["batch"]}',
      'total_steps=1', 'num_epochs=0', 'eval_every_steps=0', 'log_every_steps=1',
      'progress_bar=false', *spec['overrides']])
  config.evals = {}
  train.run(config, workdir)


def time_row(name: str, cache_dir: str, scratch: str) -> dict:
  workdir = tempfile.mkdtemp(dir=scratch)
  env = {**os.environ, 'JAX_COMPILATION_CACHE_DIR': cache_dir}
  start = time.perf_counter()
  proc = subprocess.run([sys.executable, '-m', 'benchmarks.time_to_first_step', '--worker', name,
                         '--workdir', workdir], env=env, capture_output=True, text=True,
                        check=False)
  seconds = time.perf_counter() - start
  shutil.rmtree(workdir, ignore_errors=True)
  if proc.returncode:
    raise RuntimeError(f'{name} failed:\n{proc.stderr[-3000:]}')
  log = [m.groups() for m in map(PHASE.match, proc.stderr.splitlines()) if m]
  return {'seconds': round(seconds, 1), 'log': [f'{t} {text}' for t, text in log][-12:]}


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--out', default='')
  parser.add_argument('--models', default=','.join(MODELS))
  parser.add_argument('--worker', default='')
  parser.add_argument('--workdir', default='')
  args = parser.parse_args(argv)
  if args.worker:
    worker(args.worker, args.workdir)
    return
  scratch = tempfile.mkdtemp(prefix='ttfs-')
  rows = []
  for name in args.models.split(','):
    cache_dir = os.path.join(scratch, f'xla-{name}')  # Empty: the cold run fills it.
    for state in ('cold', 'warm'):
      row = {'model': name, 'cache': state, **time_row(name, cache_dir, scratch),
             'load_average_1min': round(os.getloadavg()[0], 2)}  # Other work on the machine.
      files = sum(len(f) for _, _, f in os.walk(cache_dir))
      row['cache_files'] = files
      print(f'{name:14s} {state}: {row["seconds"]:8.1f} s  ({files} cached programs)', flush=True)
      rows.append(row)
  shutil.rmtree(scratch, ignore_errors=True)
  table = ['| model | cache | time to first step (s) | cached programs |', '|---|---|---|---|']
  table += [f'| {r["model"]} | {r["cache"]} | {r["seconds"]:.1f} | {r["cache_files"]} |'
            for r in rows]
  print('\n'.join(table))
  if args.out:
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, 'time_to_first_step.json'), 'w') as f:
      json.dump({'rows': rows, 'metadata': common.metadata(),
                 'command': 'python -m benchmarks.time_to_first_step ' + ' '.join(
                     sys.argv[1:])}, f, indent=2)
    with open(os.path.join(args.out, 'time_to_first_step.md'), 'w') as f:
      f.write('\n'.join(table) + '\n')


if __name__ == '__main__':
  main()
