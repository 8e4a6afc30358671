"""AFD's feature-gap figure: the `feature_gap` evaluator's metrics over adversarial fine-tuning,
one curve per run, read from the runs' metrics.jsonl (the start model's value is epoch 0)."""

from __future__ import annotations

import json
import os
from typing import Optional, Sequence

from jaxcv.workdir import read_json

GAP_METRICS = ('relative_l2', 'l2', 'cosine_distance')
TITLES = {'relative_l2': '||f(x) - f(x_adv)|| / ||f(x)||', 'l2': '||f(x) - f(x_adv)||',
          'cosine_distance': '1 - cos(f(x), f(x_adv))'}


def curves(run_dir: str) -> dict[str, list[tuple[float, float]]]:
  """metric -> [(epoch, value)] of one run, starting with its init_checkpoint's final value."""
  try:
    with open(os.path.join(run_dir, 'metrics.jsonl')) as f:
      records = [json.loads(line) for line in f if line.strip()]
  except (OSError, ValueError):
    return {}
  # Epochs per step from the training records, which log both.
  ratio = next((r['epoch'] / r['step'] for r in records if 'epoch' in r and r.get('step')), None)
  if ratio is None:
    return {}
  start = (read_json(os.path.join(run_dir, 'config.json')) or {}).get('init_checkpoint') or ''
  start_summary = read_json(os.path.join(start, 'summary.json')) or {} if start else {}
  result = {}
  for metric in GAP_METRICS:
    key = f'feature_gap/{metric}'
    points = [(0.0, start_summary[key])] if key in start_summary else []
    points += [(r['step'] * ratio, r[key]) for r in records if key in r]
    if points:
      result[metric] = sorted(points)
  return result


def plot_runs(workdir: str, runs: Sequence[str], path: str = '') -> Optional[str]:
  """feature_gap.png in `workdir` for the runs (folders of workdir) that logged the gap."""
  by_run = {run: curves(os.path.join(workdir, run)) for run in runs}
  by_run = {run: c for run, c in by_run.items() if c}
  if not by_run:
    return None
  from matplotlib.figure import Figure  # pylint: disable=import-outside-toplevel
  fig = Figure(figsize=(4.2 * len(GAP_METRICS), 3.4))
  axes = fig.subplots(1, len(GAP_METRICS))
  for ax, metric in zip(axes, GAP_METRICS):
    for run, by_metric in by_run.items():
      if by_metric.get(metric):
        ax.plot(*zip(*by_metric[metric]), marker='o', label=run)
    ax.set_title(TITLES[metric], fontsize=9)
    ax.set_xlabel('epoch of adversarial fine-tuning')
  axes[0].legend(fontsize=7)
  fig.suptitle('Natural vs adversarial feature gap (PGD-10, eps 8/255), test subset', fontsize=10)
  fig.tight_layout()
  path = path or os.path.join(workdir, 'feature_gap.png')
  fig.savefig(path, dpi=110)
  return path
