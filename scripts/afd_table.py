"""Builds AFD's table (Clean / PGD / AA-proxy / Avg) and the feature-gap plot from run outputs.

Reads, from --dir, whatever exists of: `<run>_summary.json` and `<run>_metrics.jsonl` of the
natural, vAFT, AFD and ablation runs (configs/afd/*.py), `eval_<run>_summary.json` of
configs/afd/evaluate.py, and `pgd_training.json` of benchmarks/pgd_training.py. Writes
table.md, table.json and feature_gap.png there.

  Clean  test accuracy of the run's evaluated (EMA) weights, whole test set
  PGD    PGD-20, eps 8/255, step 0.003 (the paper code's evaluation), on the evaluation subset;
         PGD-20 at 2/255 alongside
  AA     jaxcv's AutoAttack proxy: worst case of APGD-CE and APGD-T (no FAB, no Square), so an
         upper bound on AutoAttack's robust accuracy, not the paper's AA column
  Avg    mean of Clean, PGD and AA (the paper's Avg)

  python scripts/afd_table.py --dir runs/gpu/afd
"""

from __future__ import annotations

import argparse
import json
import os

RUNS = (('natural', 'natural model'), ('vaft', 'vAFT'), ('afd', 'AFD'),
        ('afd_code_faithful', 'AFD (code_faithful)'), ('afd_no_alignment', 'AFD, gamma=0'),
        ('afd_no_disentangler', 'AFD, alpha=beta=0'))
GAP_METRICS = ('relative_l2', 'l2', 'cosine_distance')


def _load(path):
  if not os.path.exists(path):
    return None
  if path.endswith('.jsonl'):
    with open(path) as f:
      return [json.loads(line) for line in f if line.strip()]
  with open(path) as f:
    return json.load(f)


def _pct(value):
  return '-' if value is None else f'{100 * value:.2f}'


def table_rows(directory):
  rows = []
  for run, label in RUNS:
    summary = _load(os.path.join(directory, f'{run}_summary.json'))
    evaluation = _load(os.path.join(directory, f'eval_{run}_summary.json')) or {}
    if summary is None and not evaluation:
      continue
    summary = summary or {}
    row = {
        'run': run, 'method': label,
        'clean': summary.get('test/accuracy', evaluation.get('robust/clean_accuracy')),
        'pgd': evaluation.get('robust/pgd20_s0.003_accuracy',
                              summary.get('pgd/pgd20_s0.003_accuracy')),
        'pgd_2_255': evaluation.get('robust/pgd20_s2_accuracy',
                                    summary.get('pgd/pgd20_s2_accuracy')),
        'aa_proxy': evaluation.get('robust/worst_case_accuracy'),
        'apgd_ce': evaluation.get('robust/apgd_ce_accuracy'),
        'apgd_t': evaluation.get('robust/apgd_t_accuracy'),
        'epochs': summary.get('epochs'), 'train_examples_per_sec': summary.get('examples_per_sec'),
    }
    parts = [row['clean'], row['pgd'], row['aa_proxy']]
    row['avg'] = sum(parts) / 3 if None not in parts else None
    rows.append(row)
  return rows


def markdown(rows, schedule=''):
  lines = []
  if schedule:
    lines += [f'Schedule: {schedule}', '']
  lines += ['| method | Clean | PGD-20 (0.003) | PGD-20 (2/255) | AA proxy (APGD-CE+T) | Avg | '
            'epochs | train img/s |', '|---|---|---|---|---|---|---|---|']
  for r in rows:
    lines.append(f'| {r["method"]} | {_pct(r["clean"])} | {_pct(r["pgd"])} | '
                 f'{_pct(r["pgd_2_255"])} | {_pct(r["aa_proxy"])} | {_pct(r["avg"])} | '
                 f'{r["epochs"] if r["epochs"] is not None else "-"} | '
                 f'{r["train_examples_per_sec"] or "-"} |')
  lines += ['', 'L-inf eps 8/255, BN in eval mode, EMA weights where the run keeps them. Clean on '
            'the whole test set; attacks on the evaluation subset. AA proxy = worst case of '
            'APGD-CE and APGD-T (no FAB/Square): not comparable with the paper\'s AutoAttack '
            'column. Avg = mean(Clean, PGD, AA proxy).']
  return '\n'.join(lines)


def feature_gap_curves(directory):
  """run -> metric -> [(epoch, value)], with the natural model as epoch 0 of every run."""
  natural = _load(os.path.join(directory, 'natural_summary.json')) or {}
  curves = {}
  for run, label in RUNS[1:]:
    records = _load(os.path.join(directory, f'{run}_metrics.jsonl'))
    if not records:
      continue
    # Steps per epoch from the training records, which log both.
    ratio = next((r['epoch'] / r['step'] for r in records if 'epoch' in r and r['step']), None)
    if ratio is None:
      continue
    curves[label] = {}
    for metric in GAP_METRICS:
      points = [(0.0, natural[f'feature_gap/{metric}'])] if f'feature_gap/{metric}' in natural \
          else []
      points += [(r['step'] * ratio, r[f'feature_gap/{metric}']) for r in records
                 if f'feature_gap/{metric}' in r]
      curves[label][metric] = sorted(points)
  return curves


def plot(curves, path):
  import matplotlib
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt
  fig, axes = plt.subplots(1, len(GAP_METRICS), figsize=(4.2 * len(GAP_METRICS), 3.4))
  titles = {'relative_l2': '||f(x) - f(x_adv)|| / ||f(x)||', 'l2': '||f(x) - f(x_adv)||',
            'cosine_distance': '1 - cos(f(x), f(x_adv))'}
  for ax, metric in zip(axes, GAP_METRICS):
    for label, by_metric in curves.items():
      points = by_metric.get(metric) or []
      if points:
        ax.plot(*zip(*points), marker='o', label=label)
    ax.set_title(titles[metric], fontsize=9)
    ax.set_xlabel('epoch of adversarial fine-tuning')
  axes[0].legend(fontsize=8)
  fig.suptitle('Natural vs adversarial feature gap (PGD-10, eps 8/255), test subset', fontsize=10)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--dir', required=True, help='folder with the runs\' outputs')
  parser.add_argument('--schedule', default='', help='schedule text to print with the table')
  args = parser.parse_args()
  rows = table_rows(args.dir)
  text = markdown(rows, args.schedule)
  bench = _load(os.path.join(args.dir, 'pgd_training.json'))
  if bench:
    text += '\n\nPGD-10 adversarial training throughput (%s, ratio vs %s):\n' % (
        bench['metadata'].get('device'), bench.get('baseline'))
    for r in bench['rows']:
      text += (f'  {r["name"]:14s} {r.get("examples_per_sec", 0) or 0:10.0f} img/s  ratio '
               f'{r.get("ratio") or float("nan"):.2f}  {r.get("error", "")}\n')
  print(text)
  with open(os.path.join(args.dir, 'table.md'), 'w') as f:
    f.write(text + '\n')
  curves = feature_gap_curves(args.dir)
  with open(os.path.join(args.dir, 'table.json'), 'w') as f:
    json.dump({'rows': rows, 'feature_gap': curves, 'schedule': args.schedule}, f, indent=2)
  if curves:
    plot(curves, os.path.join(args.dir, 'feature_gap.png'))
    print('wrote', os.path.join(args.dir, 'feature_gap.png'))


if __name__ == '__main__':
  main()
