"""Shared helpers for the benchmark scripts: timing, tables, JSON, metadata.

Every benchmark script times a PyTorch reference and jaxcv side by side in
one process, prints a table whose first column is the ratio to a named
baseline, and writes `<out_dir>/<name>.json` with the rows plus `metadata()`.
torch and jax are imported lazily so this module imports without either.
"""

from __future__ import annotations

import datetime
import importlib.util
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import time
from typing import Any, Callable, Optional, Sequence


def smoke() -> bool:
  """True when SMOKE=1: every benchmark shrinks to a seconds-long CPU run."""
  return os.environ.get('SMOKE', '0') not in ('', '0', 'false')


def sync(result: Any = None) -> None:
  """Blocks until queued device work is done (JAX arrays and/or CUDA)."""
  if result is not None:
    try:
      import jax
      jax.block_until_ready(result)
    except ImportError:
      pass
  if 'torch' in sys.modules:
    import torch
    if torch.cuda.is_available() and torch.cuda.is_initialized():
      torch.cuda.synchronize()


def time_fn(fn: Callable[[], Any], *, steps: int, warmup: int = 3,
            repeats: int = 1, sync_fn: Optional[Callable[[Any], None]] = None
           ) -> dict[str, float]:
  """Wall time of `steps` back-to-back calls of `fn`, after `warmup` calls.

  The device is synchronised (on the last call's result) before the clock
  starts and after the last call, so the time covers all queued work but not
  the Python-side dispatch overlap with an unfinished warmup. With `repeats`
  > 1 the best and median repeat are reported; `seconds_per_call` is the
  best (least disturbed) one.
  """
  sync_fn = sync_fn or sync
  out = None
  for _ in range(warmup):
    out = fn()
  sync_fn(out)
  times = []
  for _ in range(max(1, repeats)):
    start = time.perf_counter()
    for _ in range(steps):
      out = fn()
    sync_fn(out)
    times.append((time.perf_counter() - start) / steps)
  return {'seconds_per_call': min(times), 'median_seconds_per_call': statistics.median(times),
          'steps': steps, 'warmup': warmup, 'repeats': len(times)}


def add_ratios(rows: list[dict[str, Any]], key: str, baseline: str,
               higher_is_better: bool = True) -> list[dict[str, Any]]:
  """Sets row['ratio'] = row[key] / baseline_row[key] (inverted when lower is better).

  The baseline is the row whose 'name' equals `baseline`; rows without `key`
  (failed variants) get no ratio.
  """
  base = next((r.get(key) for r in rows if r.get('name') == baseline), None)
  for r in rows:
    value = r.get(key)
    if base and value:
      r['ratio'] = value / base if higher_is_better else base / value
    else:
      r['ratio'] = None
  return rows


def _format(value: Any) -> str:
  if value is None:
    return '-'
  if isinstance(value, float):
    if value == 0 or 1e-3 <= abs(value) < 1e6:
      return f'{value:.4g}' if abs(value) < 100 else f'{value:,.0f}'
    return f'{value:.3e}'
  if isinstance(value, int):
    return f'{value:,}'
  return str(value)


def _cell(column: str, value: Any) -> str:
  if column == 'error' and value:  # The last line of a traceback says what went wrong.
    lines = [line for line in str(value).splitlines() if line.strip()]
    return (lines[-1] if lines else '')[:100]
  return _format(value)


def print_table(rows: Sequence[dict[str, Any]], columns: Optional[Sequence[str]] = None,
                title: str = '', file=None) -> str:
  """Prints rows as an aligned text table, 'ratio' first, then 'name'.

  Returns the table text too (for RESULTS.md rendering).
  """
  file = file or sys.stdout
  if columns is None:
    columns = []
    for r in rows:
      columns += [k for k in r if k not in columns and not isinstance(r[k], (dict, list))]
  columns = [c for c in ('ratio', 'name') if c in columns] + [
      c for c in columns if c not in ('ratio', 'name')]
  cells = [[_cell(c, r.get(c)) for c in columns] for r in rows]
  widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(columns)]
  lines = []
  if title:
    lines.append(f'== {title} ==')
  lines.append('  '.join(c.ljust(w) for c, w in zip(columns, widths)))
  lines.append('  '.join('-' * w for w in widths))
  lines += ['  '.join(v.ljust(w) for v, w in zip(row, widths)) for row in cells]
  text = '\n'.join(lines)
  print(text, file=file, flush=True)
  return text


def _version(module: str) -> Optional[str]:
  """The installed version, read from package metadata: importing torch/jax is not needed."""
  from importlib import metadata as importlib_metadata
  try:
    return importlib_metadata.version(module)
  except Exception:  # noqa: BLE001 - metadata must never fail a benchmark
    mod = sys.modules.get(module)
    return getattr(mod, '__version__', None) if mod else None


def device_name() -> str:
  """Accelerator description without initialising a GPU runtime in this process.

  nvidia-smi first (the drivers must not hold GPU memory), then an already-imported JAX.
  """
  try:
    names = subprocess.run(['nvidia-smi', '--query-gpu=name', '--format=csv,noheader'],
                           capture_output=True, text=True, check=True, timeout=20).stdout
    if names.strip():
      return 'gpu:' + names.strip().splitlines()[0]
  except Exception:  # noqa: BLE001 - no NVIDIA driver here.
    pass
  if 'jax' in sys.modules:
    try:
      dev = sys.modules['jax'].devices()[0]
      return f'{dev.platform}:{getattr(dev, "device_kind", "")}'
    except Exception:  # noqa: BLE001
      pass
  return 'cpu:' + (platform.processor() or platform.machine())


def _git_commit() -> Optional[str]:
  try:
    return subprocess.run(['git', 'rev-parse', '--short', 'HEAD'], capture_output=True,
                          text=True, check=True, timeout=10).stdout.strip()
  except Exception:  # noqa: BLE001
    return None


def metadata() -> dict[str, Any]:
  """Device, date, command line and library versions of this run."""
  return {
      'date': datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds'),
      'device': device_name(),
      'command': ' '.join([os.path.basename(sys.executable)] + sys.argv),
      'smoke': smoke(),
      'git_commit': _git_commit(),
      'python': platform.python_version(),
      'versions': {m: _version(m) for m in ('jax', 'jaxlib', 'flax', 'optax', 'torch', 'airbench')
                   if importlib.util.find_spec(m) is not None},
      'xla_flags': os.environ.get('XLA_FLAGS', ''),
  }


def write_json(out_dir: str, name: str, payload: dict[str, Any]) -> str:
  """Writes `payload` plus `metadata()` to `<out_dir>/<name>.json`; returns the path."""
  os.makedirs(out_dir, exist_ok=True)
  path = os.path.join(out_dir, f'{name}.json')
  payload = {'benchmark': name, 'metadata': metadata(), **payload}
  with open(path, 'w') as f:
    json.dump(payload, f, indent=2, default=str)
  print(f'wrote {path}', flush=True)
  return path


def out_dir(default: str = 'benchmarks/out') -> str:
  """Output folder: $BENCH_OUT, else `default`."""
  return os.environ.get('BENCH_OUT', default)


def torch_available() -> bool:
  try:
    import torch  # noqa: F401
    return True
  except ImportError:
    return False


# --------------------------------------------------------------------------------------------
# Worker processes and the GPU lock.
#
# Each measurement runs in its own process. By default the drivers run one worker at a time
# (`parallel=1`): on one H200 (2026-11-26), workers compiling and autotuning concurrently both
# disturbed the other timings and outlasted their time caps. With `parallel` > 1, a file lock
# still keeps any two timed sections off the GPU at the same time.

class gpu_lock:
  """Context manager: an exclusive lock on `$BENCH_LOCK` (default /tmp/jaxcv_bench.lock)."""

  def __init__(self, path: Optional[str] = None):
    self.path = path or os.environ.get('BENCH_LOCK', '/tmp/jaxcv_bench.lock')
    self._file = None

  def __enter__(self):
    import fcntl
    self._file = open(self.path, 'a')
    start = time.perf_counter()
    fcntl.flock(self._file, fcntl.LOCK_EX)
    self.waited = time.perf_counter() - start
    return self

  def __exit__(self, *exc):
    import fcntl
    fcntl.flock(self._file, fcntl.LOCK_UN)
    self._file.close()
    return False


def run_workers(module: str, jobs: Sequence[dict[str, Any]], *, parallel: int,
                timeout: float, extra_args: Sequence[str] = ()) -> list[dict[str, Any]]:
  """Runs `python -m module --worker NAME ...` for each job, `parallel` at a time.

  A job is {'name': ..., 'env': {...}, 'args': [...]}; each worker writes its result rows as a
  JSON list to the file given by --result. A worker that fails or times out gives one row with
  its name and an 'error' (the tail of its output), so one broken variant never hides the rest.
  """
  import tempfile
  # $BENCH_DEADLINE (a Unix time) caps every worker, so a driver under an outer `timeout`
  # still reports what finished: later workers are skipped, late ones killed.
  deadline = float(os.environ.get('BENCH_DEADLINE', 'inf'))
  pending, running, rows = list(jobs), [], []
  tmp = tempfile.mkdtemp(prefix='bench_')

  def start(job):
    result = os.path.join(tmp, f'{job["name"]}.json')
    log = open(os.path.join(tmp, f'{job["name"]}.log'), 'w')
    env = {**os.environ, **job.get('env', {})}
    cmd = [sys.executable, '-m', module, '--worker', job['name'], '--result', result,
           *extra_args, *job.get('args', [])]
    print(f'[start] {job["name"]} {job.get("env", {}) or ""}', flush=True)
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
    return proc, job, result, log, time.perf_counter()

  def stop(signum, frame):  # An outer `timeout`: kill the workers, report what finished.
    raise _Stopped(f'stopped by signal {signum}')
  previous = signal.signal(signal.SIGTERM, stop)
  try:
    _run_loop(pending, running, rows, start, parallel, timeout, deadline)
  except _Stopped as e:
    rows += [{'name': item[1]['name'], 'error': str(e)} for item in running]
    rows += [{'name': job['name'], 'error': str(e)} for job in pending]
  finally:
    for proc, *_ in running:
      if proc.poll() is None:
        proc.kill()
    signal.signal(signal.SIGTERM, previous)
  return rows


class _Stopped(Exception):
  pass


def _run_loop(pending, running, rows, start, parallel, timeout, deadline):
  while pending or running:
    while pending and len(running) < parallel:
      if time.time() > deadline - 5:
        rows += [{'name': j['name'], 'error': 'skipped: out of time'} for j in pending]
        print(f'[skip ] {", ".join(j["name"] for j in pending)}: out of time', flush=True)
        pending.clear()
        break
      running.append(start(pending.pop(0)))
    time.sleep(0.2)
    for item in list(running):
      proc, job, result, log, started = item
      elapsed = time.perf_counter() - started
      if proc.poll() is None and elapsed < timeout and time.time() < deadline:
        continue
      if proc.poll() is None:
        proc.kill()
        proc.wait()
      running.remove(item)
      log.close()
      output = open(log.name).read()
      if proc.returncode == 0 and os.path.exists(result):
        got = json.load(open(result))
        for r in got:
          r.setdefault('wall_s', round(elapsed, 1))
        rows += got
        print(f'[done ] {job["name"]} in {elapsed:.0f}s', flush=True)
      else:
        why = 'timeout' if proc.returncode == -9 else f'exit {proc.returncode}'
        rows.append({'name': job['name'], 'error': f'{why}: ' + output[-1500:]})
        print(f'[fail ] {job["name"]} ({why}); output tail:\n{output[-1500:]}', flush=True)


def worker_result(path: str, rows: list[dict[str, Any]]) -> None:
  """Writes a worker's rows for `run_workers`."""
  with open(path, 'w') as f:
    json.dump(rows, f, default=float)
