"""Runs the rows of a config family's table in one process, then (optionally) the Θ proxies.

  python -m jaxcv.unlearnable.sweep --config configs/coin/resnet18.py --arg protocol=short \
      --workdir runs/coin [--rows clean,cuda,cuda_coin] [--deadline 120] [--theta]

The config file lists its rows as `TABLE = [(name, config argument, relative cost), ...]`; each
row is `train.run(config_lib.load(f'{config}:{row argument},{--arg}'), workdir/name)`. One
process shares the imports, the decoded and poisoned datasets' cache, and (with
--compile_cache) compiled programs between rows whose programs are identical (e.g. clean and
CUDA). With --deadline, a row whose estimated time (the fastest row so far per unit cost, x its
cost) would overrun is skipped, and recorded so; a row stopped by an outer time limit is recorded
as unfinished. `rows.json` in the workdir records each row's status;
scripts/coin_table.py turns the workdir into the table.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import os
import sys
import time
import traceback
from typing import Optional

import jax

from jaxcv import config as config_lib
from jaxcv import train
from jaxcv.data import load_dataset
from jaxcv.errors import ConfigError
from jaxcv.unlearnable import convolution, operators

log = logging.getLogger('jaxcv.unlearnable.sweep')


def table_rows(config_path: str) -> list[tuple[str, str, float]]:
  spec = importlib.util.spec_from_file_location('_jaxcv_table_config', config_path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  if not hasattr(module, 'TABLE'):
    raise ConfigError(f'{config_path} defines no TABLE of rows')
  return [tuple(row) if len(row) == 3 else (*row, 1.0) for row in module.TABLE]


def _write(path: str, value) -> None:
  with open(path, 'w') as f:
    json.dump(value, f, indent=2)


def planned_rows(config_path: str, common_arg: str = '', names: Optional[list[str]] = None,
                 row_args: Optional[dict[str, str]] = None) -> list[dict]:
  """The selected rows (in the order of `names`, default the table's) with their full config
  arguments, all 'not run' yet. `row_args` appends an argument to a named row's."""
  rows = table_rows(config_path)
  row_args = row_args or {}
  unknown = sorted((set(names or ()) | set(row_args)) - {r[0] for r in rows})
  if unknown:
    raise ConfigError(f'unknown rows {unknown}; known: {", ".join(r[0] for r in rows)}')
  if names:
    by_name = {r[0]: r for r in rows}
    rows = [by_name[name] for name in names]
  return [{'name': name, 'arg': ','.join(a for a in (row_arg, common_arg, row_args.get(name, ''))
                                         if a),
           'cost': cost, 'status': 'not run', 'reason': ''} for name, row_arg, cost in rows]


def run_rows(config_path: str, workdir: str, common_arg: str = '', names: Optional[list[str]] = None,
             overrides: tuple[str, ...] = (), deadline: float = 0.0,
             start_time: Optional[float] = None,
             row_args: Optional[dict[str, str]] = None) -> list[dict]:
  """Trains each row of `planned_rows(...)` into workdir/<name>; returns the statuses, also
  kept up to date in workdir/rows.json (every row is listed from the start, so the table shows
  the rows a time limit left out)."""
  start_time = time.perf_counter() if start_time is None else start_time
  records = planned_rows(config_path, common_arg, names, row_args)
  os.makedirs(workdir, exist_ok=True)
  _write(os.path.join(workdir, 'rows.json'), records)
  per_cost = []
  for record in records:
    name, arg, cost = record['name'], record['arg'], record['cost']
    elapsed = time.perf_counter() - start_time
    # Optimistic: the fastest row so far, per unit cost. Rows that reuse a compiled program are
    # much faster than the first; overrunning only loses the last row to the caller's timeout.
    estimate = min(per_cost) * cost if per_cost else 0.0
    if deadline and elapsed + estimate > deadline:
      record.update(status='skipped', reason=f'time budget: {elapsed:.0f} s spent, row needs '
                                            f'~{estimate:.0f} s of {deadline:.0f} s')
      log.warning('skipping %s (%s)', name, record['reason'])
      _write(os.path.join(workdir, 'rows.json'), records)
      continue
    log.info('row %s: %s', name, arg)
    # Recorded before training, so a row stopped by an outer time limit shows as such.
    record.update(status='unfinished', reason='stopped before it finished (time limit?)')
    _write(os.path.join(workdir, 'rows.json'), records)
    row_start = time.perf_counter()
    try:
      config = config_lib.load(f'{config_path}:{arg}', list(overrides))
      summary = train.run(config, os.path.join(workdir, name))
      record.update(status='ok', reason='', accuracy=summary.get('test/accuracy'))
    except Exception as e:  # pylint: disable=broad-except  (one failed row must not end the table)
      log.error('row %s failed:\n%s', name, traceback.format_exc())
      record.update(status='failed', reason=f'{type(e).__name__}: {e}'[:500])
    record['seconds'] = round(time.perf_counter() - row_start, 1)
    if record['status'] == 'ok':
      per_cost.append(record['seconds'] / cost)
    log.info('row %s: %s in %.1f s', name, record['status'], record['seconds'])
    _write(os.path.join(workdir, 'rows.json'), records)
  return records


def theta_for_config(config_path: str, common_arg: str = '', samples_per_class: int = 16,
                     size: int = 0) -> dict:
  """Θ proxies of the family's CUDA filters, alone and followed by COIN (its alpha and wrap)."""
  config = config_lib.load(f'{config_path}:{",".join(a for a in ("setting=cuda_coin", common_arg) if a)}')
  coin = config.coin
  test = load_dataset(coin.base_dataset, 'test', config.data.data_dir, config.data.image_size)
  size = size or test.image_shape[0]
  kernels = convolution.class_kernels(test.num_classes, 'cuda', coin.pb, coin.poison_seed)
  result = {'size': size, 'samples_per_class': samples_per_class, 'alpha': coin.alpha,
            'wrap': coin.wrap}
  for label, alpha in (('cuda', None), ('cuda_coin', coin.alpha)):
    result[label] = operators.unlearnable_theta(kernels, size, samples_per_class, alpha,
                                                coin.wrap)
  return result


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--config', required=True, help='a config family file that defines TABLE')
  parser.add_argument('--arg', default='', help="appended to every row's config argument")
  parser.add_argument('--workdir', required=True)
  parser.add_argument('--rows', default='', help='comma-separated row names (default: all)')
  parser.add_argument('--override', action='append', default=[], help='key=value, repeatable')
  parser.add_argument('--row_arg', action='append', default=[],
                      help="NAME=ARGS: appended to row NAME's config argument, repeatable")
  parser.add_argument('--deadline', type=float, default=0.0,
                      help='seconds from start after which rows are skipped (0: none)')
  parser.add_argument('--theta', action='store_true', help='also compute the Θ proxies')
  parser.add_argument('--theta_size', type=int, default=0, help='image side for Θ (0: data)')
  parser.add_argument('--theta_samples', type=int, default=16)
  parser.add_argument('--compile_cache', default='', help='persistent compilation cache folder')
  args = parser.parse_args(argv)
  start = time.perf_counter()
  # force: jax/orbax imports may already have given the root logger a handler.
  logging.basicConfig(level=logging.INFO, format='%(asctime)s %(levelname)s %(message)s',
                      datefmt='%H:%M:%S', stream=sys.stdout, force=True)
  logging.getLogger('absl').setLevel(logging.WARNING)  # orbax's per-save INFO lines.
  if args.compile_cache:
    jax.config.update('jax_compilation_cache_dir', args.compile_cache)
    jax.config.update('jax_persistent_cache_min_compile_time_secs', 0.5)
  names = [r for r in args.rows.split(',') if r]
  row_args = dict(item.partition('=')[::2] for item in args.row_arg)
  os.makedirs(args.workdir, exist_ok=True)
  _write(os.path.join(args.workdir, 'rows.json'),
         planned_rows(args.config, args.arg, names, row_args))  # Listed even if stopped early.
  if args.theta:  # First: cheap, and not lost if a time limit ends the rows.
    try:
      t0 = time.perf_counter()
      theta = theta_for_config(args.config, args.arg, args.theta_samples, args.theta_size)
      theta['seconds'] = round(time.perf_counter() - t0, 1)
      _write(os.path.join(args.workdir, 'theta.json'), theta)
      log.info('theta: %s', theta)
    except Exception:  # pylint: disable=broad-except
      log.error('theta failed:\n%s', traceback.format_exc())
  overrides = ('progress_bar=false', *args.override)  # One log line per interval, no bars.
  rows = run_rows(args.config, args.workdir, args.arg, names, overrides, args.deadline, start,
                  row_args)
  failed = [r['name'] for r in rows if r['status'] == 'failed']
  log.info('%d rows: %d ok, %d failed %s, %d skipped; %.0f s', len(rows),
           sum(r['status'] == 'ok' for r in rows), len(failed), failed,
           sum(r['status'] == 'skipped' for r in rows), time.perf_counter() - start)
  return 1 if failed else 0


if __name__ == '__main__':
  sys.exit(main())
