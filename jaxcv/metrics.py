"""What a run reports: `metrics.jsonl`, one log line per log step, optional TensorBoard events, a
progress bar with ETA (in a terminal or notebook), PNG curves and a summary table.

Only process 0 writes; other processes get no-op writers, so callers never branch on it.
"""

from __future__ import annotations

import json
import logging
import math
import os
import sys
import time
from typing import Any, Mapping, Optional

import jax
import numpy as np

from jaxcv import workdir as workdir_lib
from jaxcv.errors import ConfigError

log = logging.getLogger(__name__)


def _plain(value: Any) -> Any:
  if isinstance(value, (np.generic, np.ndarray, jax.Array)):
    value = np.asarray(value).item()
  return value


class MetricWriter:
  """Appends one JSON object per line: {"step": s, "name": value, ...} to metrics.jsonl; logs each
  training record as one line (a batch job's log shows progress without a progress bar); with
  `tensorboard`, also writes the scalars as TensorBoard events under <workdir>/tensorboard.
  Only process 0 writes (unless `enabled` says otherwise)."""

  def __init__(self, workdir: str, enabled: Optional[bool] = None, tensorboard: bool = False):
    self.enabled = jax.process_index() == 0 if enabled is None else enabled
    self.path = os.path.join(workdir, 'metrics.jsonl')
    self._tensorboard = None
    if self.enabled:
      os.makedirs(workdir, exist_ok=True)
      if tensorboard:
        self._tensorboard = _tensorboard_writer(os.path.join(workdir, 'tensorboard'))

  def write(self, step: int, metrics: Mapping[str, Any]) -> None:
    if not self.enabled:
      return
    record = {'step': int(step), 'time': time.time(), **{k: _plain(v) for k, v in metrics.items()}}
    with open(self.path, 'a') as f:
      f.write(json.dumps(record) + '\n')
    if 'train/loss' in record:
      log.info(train_log_line(record))
    if self._tensorboard is not None:
      for name, value in record.items():
        if name not in ('step', 'time') and isinstance(value, (int, float)):
          self._tensorboard.add_scalar(name, value, global_step=int(step), walltime=record['time'])
      self._tensorboard.flush()

  def close(self) -> None:
    if self._tensorboard is not None:
      self._tensorboard.close()
      self._tensorboard = None


def _tensorboard_writer(logdir: str):
  """A TensorBoard event writer without TensorFlow (tensorboardX: protobuf and numpy only)."""
  try:
    from tensorboardX import SummaryWriter  # pylint: disable=g-import-not-at-top
  except ImportError:
    raise ConfigError('config.tensorboard=True needs tensorboardX: pip install '
                      '"jaxcv[tensorboard]" (or set config.tensorboard=False)') from None
  return SummaryWriter(logdir=logdir, flush_secs=30)


def train_log_line(record: Mapping[str, Any]) -> str:
  """'step 200: loss 1.2345, accuracy 0.5312, lr 0.0998, 2,345 examples/s' from a train record."""
  parts = [f'step {record["step"]}:']
  for key, label in (('train/loss', 'loss'), ('train/accuracy', 'accuracy'),
                     ('learning_rate', 'lr')):
    if isinstance(record.get(key), (int, float)):
      parts.append(f'{label} {record[key]:.4g},')
  if isinstance(record.get('examples_per_sec'), (int, float)):
    parts.append(f'{record["examples_per_sec"]:,.0f} examples/s')
  return ' '.join(parts).rstrip(',')


def drop_rows_after(path: str, step: int) -> None:
  """Removes the rows past `step` (and any line cut short by a kill) from a metrics file.

  A resumed run rewrites everything after its restored step; the killed run's rows for those
  steps would otherwise appear twice in the file and the plot.
  """
  if not os.path.exists(path):
    return
  with open(path) as f:
    lines = f.readlines()
  keep = [line for line in lines if _row_step(line) <= step]
  if len(keep) != len(lines):
    workdir_lib.write_text(path, ''.join(keep))


def _row_step(line: str) -> float:
  try:
    return json.loads(line)['step']
  except (ValueError, KeyError, TypeError):
    return math.inf  # Unreadable: dropped.


def read_jsonl(path: str) -> list[dict]:
  with open(path) as f:
    return [json.loads(line) for line in f if line.strip()]


def interactive_output() -> bool:
  """Whether a person watches the output: a terminal, or a notebook (whose stdout is a stream
  object of the kernel, not a terminal)."""
  if type(sys.stdout).__module__.startswith('ipykernel'):
    return True
  return sys.stdout is not None and sys.stdout.isatty()


class Progress:
  """A tqdm bar over training steps with loss and throughput; silent off process 0."""

  def __init__(self, total: int, initial: int, enabled: bool = True):
    self._bar = None
    # A bar in a file (a batch job's log) is noise: the per-step log lines say the same.
    if enabled and jax.process_index() == 0 and interactive_output():
      from tqdm.auto import tqdm  # pylint: disable=g-import-not-at-top
      self._bar = tqdm(total=total, initial=initial, unit='step', dynamic_ncols=True,
                       mininterval=1.0)

  def update_to(self, step: int, **postfix) -> None:
    if self._bar is not None:
      self._bar.update(step - self._bar.n)
      if postfix:
        self._bar.set_postfix({k: f'{v:.4g}' for k, v in postfix.items()}, refresh=False)

  def close(self) -> None:
    if self._bar is not None:
      self._bar.close()


def plot_curves(jsonl_path: str, png_path: str) -> Optional[str]:
  """Plots every logged scalar against step, one panel per metric group; returns the PNG path."""
  # A Figure of its own, not pyplot: no global backend switch (a notebook's inline figures live).
  from matplotlib.figure import Figure  # pylint: disable=g-import-not-at-top

  records = read_jsonl(jsonl_path)
  skip = {'step', 'time', 'epoch', 'examples_per_sec', 'learning_rate'}
  names = sorted({k for r in records for k, v in r.items()
                  if k not in skip and not k.endswith('/seconds') and isinstance(v, (int, float))})
  # One panel per metric kind ('loss', 'accuracy', ...), so train and test curves overlay.
  groups: dict[str, list[str]] = {}
  for name in names:
    groups.setdefault(name.rsplit('/', 1)[-1], []).append(name)
  if not groups:
    return None
  fig = Figure(figsize=(4.5 * len(groups), 3.5))
  axes = fig.subplots(1, len(groups), squeeze=False)
  for ax, (kind, members) in zip(axes[0], sorted(groups.items())):
    for name in members:
      points = [(r['step'], r[name]) for r in records
                if isinstance(r.get(name), (int, float)) and math.isfinite(r[name])]
      if points:
        steps, values = zip(*points)
        ax.plot(steps, values, marker='o' if len(points) < 30 else None, label=name)
    ax.set_xlabel('step')
    ax.set_title(kind)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(png_path, dpi=100)
  return png_path


def format_summary(summary: Mapping[str, Any]) -> str:
  """A two-column table of the final numbers, for the terminal and the notebook."""
  rows = [(k, f'{v:.4f}' if isinstance(v, float) else str(v)) for k, v in summary.items()]
  width = max((len(k) for k, _ in rows), default=0)
  line = '-' * (width + 3 + max((len(v) for _, v in rows), default=0))
  return '\n'.join([line] + [f'{k:<{width}}   {v}' for k, v in rows] + [line])
