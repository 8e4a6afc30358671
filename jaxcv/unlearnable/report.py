"""The COIN results table: collects runs' summary.json into markdown and a bar plot.

A sweep of configs/coin/table.py holds one sub-folder per row (config.json with the `coin`
section the COIN configs write, summary.json), rows.json (statuses, including skipped and failed
rows) and the `theta` row (the Θ proxies, from `theta_row`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

from jaxcv.workdir import read_json


THETA_ROW = 'theta'  # The table row holding the Θ proxies.


def theta_row(workdir: str, config: str, samples_per_class: int = 16, size: int = 0) -> dict:
  """Θ proxies of a COIN config's CUDA filters, alone and followed by COIN (its alpha and wrap);
  `size` 0 takes the test images' side. The `theta` row of configs/coin/table.py."""
  del workdir
  from jaxcv import config as config_lib  # pylint: disable=g-import-not-at-top
  from jaxcv.data import load_dataset  # pylint: disable=g-import-not-at-top
  from jaxcv.unlearnable import convolution, operators  # pylint: disable=g-import-not-at-top
  config = config_lib.load(config)
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


def collect(root: str | os.PathLike) -> list[dict]:
  """One dict per row: name, status, accuracy (%), model, setting details, epochs, seconds."""
  root = Path(root)
  statuses = [r for r in read_json(root / 'rows.json') or [] if r['name'] != THETA_ROW]
  names = [r['name'] for r in statuses]
  names += sorted(p.name for p in root.iterdir()
                  if (p / 'summary.json').is_file() and p.name not in names + [THETA_ROW])
  by_name = {r['name']: r for r in statuses}
  rows = []
  for name in names:
    status = by_name.get(name, {'status': 'ok'})
    summary = read_json(root / name / 'summary.json') or {}
    config = read_json(root / name / 'config.json') or {}
    coin = config.get('coin', {})
    accuracy = summary.get('test/accuracy')
    rows.append({
        'name': name,
        # A result on disk counts even when this sweep skipped the row (an earlier sweep ran it).
        'status': 'ok' if accuracy is not None else status['status'],
        'reason': status.get('reason', ''),
        'accuracy': None if accuracy is None else 100.0 * accuracy,
        'model': config.get('model', {}).get('name', ''),
        'poison': coin.get('poison', ''), 'defense': coin.get('defense', ''),
        'alpha': coin.get('alpha') or '', 'reference': coin.get('reference', ''),
        'epochs': summary.get('epochs'), 'seconds': status.get('seconds'),
        'examples_per_sec': summary.get('examples_per_sec'),
    })
  return rows


def markdown(rows: list[dict], theta: Optional[dict] = None) -> str:
  lines = ['| row | model | training data | defense | test accuracy (%) | paper (%) | epochs | '
           'wall (s) |', '|---|---|---|---|---|---|---|---|']
  for r in rows:
    defense = r['defense'] + (f' (alpha {r["alpha"]})' if r['alpha'] else '')
    accuracy = (f'{r["accuracy"]:.2f}' if r['accuracy'] is not None
                else f'{r["status"]}: {r["reason"]}' if r['reason'] else r['status'])
    lines.append(f'| {r["name"]} | {r["model"]} | {r["poison"]} | {defense} | {accuracy} | '
                 f'{r["reference"]} | '
                 f'{r["epochs"] if r["epochs"] is not None else ""} | '
                 f'{r["seconds"] if r["seconds"] is not None else ""} |')
  if theta:
    lines += ['', f'Θ proxies of the effective per-sample operators ({theta.get("size")}x'
              f'{theta.get("size")}, {theta.get("samples_per_class")} samples per class, '
              f'alpha {theta.get("alpha")}, wrap {theta.get("wrap")}; see jaxcv/unlearnable/'
              'operators.py):', '',
              '| operators | Θ_imi | Θ_imi (relative) | Θ_imc (mean cos) | inter-class distance |',
              '|---|---|---|---|---|']
    for label in ('cuda', 'cuda_coin'):
      if label in theta:
        t = theta[label]
        lines.append(f'| {label} | {t["theta_imi"]:.4g} | {t["theta_imi_relative"]:.4g} | '
                     f'{t["theta_imc"]:.4f} | {t["inter_class_distance"]:.4g} |')
  return '\n'.join(lines) + '\n'


def bar_plot(rows: list[dict], path: str | os.PathLike) -> Optional[str]:
  """Test accuracy per row, as horizontal bars; rows without a result are left out."""
  from matplotlib.figure import Figure  # pylint: disable=g-import-not-at-top
  done = [r for r in rows if r['accuracy'] is not None]
  if not done:
    return None
  colours = {'none': 'tab:gray', 'coin': 'tab:green'}
  fig = Figure(figsize=(7, 0.35 * len(done) + 1.2))
  ax = fig.add_subplot()
  ax.barh([r['name'] for r in done], [r['accuracy'] for r in done],
          color=[colours.get(r['defense'], 'tab:blue') if r['poison'] != 'none' else 'black'
                 for r in done])
  for i, r in enumerate(done):
    ax.text(r['accuracy'] + 0.5, i, f'{r["accuracy"]:.1f}', va='center', fontsize=8)
  ax.invert_yaxis()
  ax.set_xlim(0, 100)
  ax.set_xlabel('clean test accuracy (%)')
  ax.set_title('COIN: black clean data, grey undefended, green COIN, blue other defenses',
               fontsize=9)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  return str(path)


def write_table(root: str | os.PathLike, out: Optional[str | os.PathLike] = None) -> str:
  """Writes coin_table.md and coin_table.png into `out` (default: root); returns the markdown."""
  out = Path(out or root)
  out.mkdir(parents=True, exist_ok=True)
  rows = collect(root)
  text = markdown(rows, read_json(Path(root) / THETA_ROW / 'summary.json'))
  (out / 'coin_table.md').write_text(text)
  bar_plot(rows, out / 'coin_table.png')
  return text
