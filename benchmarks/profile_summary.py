"""Summarises a `jax.profiler` trace: where device time goes, top kernels, idle gaps.

Reads the newest `perfetto_trace.json.gz` (written by `start_trace(create_perfetto_trace=True)`)
under a trace directory. On a GPU it keeps the kernel events of the device's stream threads
('/device:GPU:N', 'Stream #...'); on a CPU it keeps the XLA executor threads' op events, so the
same code is exercised in smoke runs. Kernels are grouped by name and by a coarse category
(convolution, matmul, reduction/BatchNorm, elementwise fusion, copy/transpose, other). Busy time
vs the span between the first and last kernel gives the idle share: device time lost waiting for
the host (dispatch) rather than computing.

  python -m benchmarks.profile_summary $OUT/perf/trace --out $OUT/perf
"""

from __future__ import annotations

import argparse
import collections
import glob
import gzip
import json
import os
import re
import sys
from typing import Any

from benchmarks import common

_CATEGORIES = (
    ('convolution', re.compile(r'conv(?!ert)|cudnn|xmma|implicit|wgrad|dgrad|fprop|winograd', re.I)),
    ('matmul', re.compile(r'gemm|cutlass|dot|matmul|cublas|sm\d+_', re.I)),
    ('reduction/batchnorm', re.compile(r'reduc|bn_|batch_norm|norm', re.I)),
    ('copy/transpose', re.compile(r'copy|memcpy|memset|transpose|concat|pad|slice', re.I)),
    ('elementwise fusion', re.compile(r'fusion|loop_|input_|elementwise|triton', re.I)),
)


def category(kernel: str) -> str:
  for name, pattern in _CATEGORIES:
    if pattern.search(kernel):
      return name
  return 'other'


def find_trace(path: str) -> str:
  if os.path.isfile(path):
    return path
  found = sorted(glob.glob(os.path.join(path, '**', 'perfetto_trace.json.gz'), recursive=True),
                 key=os.path.getmtime)
  if not found:
    raise FileNotFoundError(f'no perfetto_trace.json.gz under {path}')
  return found[-1]


def device_events(events: list[dict]) -> tuple[list[dict], str]:
  """Complete ('X') events of the device's compute streams, and which kind they are."""
  process = {e['pid']: e['args']['name'] for e in events
             if e.get('ph') == 'M' and e.get('name') == 'process_name'}
  thread = {(e['pid'], e.get('tid')): e['args']['name'] for e in events
            if e.get('ph') == 'M' and e.get('name') == 'thread_name'}
  complete = [e for e in events if e.get('ph') == 'X' and e.get('dur') is not None]
  gpu_pids = {pid for pid, name in process.items()
              if re.search(r'/device:(GPU|TPU)|GPU|CUDA', name, re.I) and '/host' not in name}
  if gpu_pids:
    thread_of = lambda e: thread.get((e['pid'], e.get('tid')), '')
    streams = [e for e in complete if e['pid'] in gpu_pids and thread_of(e).startswith('Stream')]
    if streams:
      return streams, 'gpu kernels'
    ops = [e for e in complete if e['pid'] in gpu_pids and 'XLA Ops' in thread_of(e)]
    if ops:
      return ops, 'gpu XLA ops'
    # Unknown thread naming: every event of the device processes except module/step markers.
    return [e for e in complete if e['pid'] in gpu_pids
            and not re.search(r'XLA Modules|Steps|TraceMe', thread_of(e))], 'gpu events'
  ops = [e for e in complete
         if re.match(r'tf_XLA(Eigen|PjRtCpuClient)', thread.get((e['pid'], e.get('tid')), ''))
         and not e['name'].startswith(('$', 'ThunkExecutor'))]  # Wrappers, not ops.
  return ops, 'cpu XLA ops'


def summarise(trace_path: str, top: int = 15, steps: int | None = None) -> dict[str, Any]:
  with gzip.open(trace_path) as f:
    events = json.load(f)['traceEvents']
  kernels, kind = device_events(events)
  if not kernels:
    return {'trace': trace_path, 'kind': kind, 'error': 'no device events found'}
  busy = sum(e['dur'] for e in kernels)  # Microseconds; overlapping streams may double count.
  span = max(e['ts'] + e['dur'] for e in kernels) - min(e['ts'] for e in kernels)
  by_name = collections.defaultdict(lambda: [0.0, 0])
  by_category = collections.defaultdict(float)
  for e in kernels:
    name = re.sub(r'\.\d+$', '', e['name'])  # fusion.12 and fusion.13 are different kernels,
    by_name[e['name']][0] += e['dur']         # but share a category.
    by_name[e['name']][1] += 1
    by_category[category(name)] += e['dur']
  top_kernels = sorted(by_name.items(), key=lambda kv: -kv[1][0])[:top]
  return {
      'trace': trace_path,
      'kind': kind,
      'num_events': len(kernels),
      'busy_ms': busy / 1e3,
      'span_ms': span / 1e3,
      'idle_share': max(0.0, 1 - busy / span) if span else None,
      'busy_ms_per_step': busy / 1e3 / steps if steps else None,
      'categories': [{'category': c, 'ms': t / 1e3, 'share': t / busy}
                     for c, t in sorted(by_category.items(), key=lambda kv: -kv[1])],
      'top_kernels': [{'kernel': k[:90], 'category': category(k), 'ms': t / 1e3, 'calls': n,
                       'share': t / busy} for k, (t, n) in top_kernels],
  }


def print_summary(summary: dict[str, Any]) -> None:
  if 'error' in summary:
    print(f'profile: {summary["error"]} in {summary["trace"]}')
    return
  print(f'== profile: {summary["kind"]}, {summary["num_events"]} events, busy '
        f'{summary["busy_ms"]:.2f} ms over a {summary["span_ms"]:.2f} ms span '
        f'(idle {100 * (summary["idle_share"] or 0):.1f}%) ==')
  common.print_table(summary['categories'], ['category', 'ms', 'share'])
  common.print_table(summary['top_kernels'], ['share', 'ms', 'calls', 'category', 'kernel'])


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('trace', help='trace directory or perfetto_trace.json.gz')
  parser.add_argument('--out', default=None)
  parser.add_argument('--steps', type=int, default=None, help='train steps in the trace')
  parser.add_argument('--top', type=int, default=15)
  args = parser.parse_args(argv)
  summary = summarise(find_trace(args.trace), args.top, args.steps)
  print_summary(summary)
  if args.out:
    common.write_json(args.out, 'profile_summary', summary)


if __name__ == '__main__':
  sys.exit(main())
