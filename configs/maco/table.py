"""MACO's comparison at CIFAR scale (arXiv 2306.06805, docs/maco.md): feature visualisations of all
10 CIFAR-10 classes on three classifiers trained by jaxcv (two ResNet seeds and a small ViT) with
four parameterisations (MACO, Lucid's Fourier image, pixels, the magnitude-and-phase ablation),
measured by target logit/probability, transferability to the other two models, plausibility,
an FID/KID proxy in an independent network's features, and the radial spectrum against the data.

  python -m jaxcv.sweep --table configs/maco/table.py:cpu --workdir runs/maco
  python -m jaxcv.sweep --table configs/maco/table.py:gpu --workdir runs/maco

Rows: resnet_s0, resnet_s1, vit (the classifiers; configs/maco/classifier.py), judge (the
FID-proxy network, seed 100), fv_<model> (configs/maco/featviz.py on that model, transferring to
the other two). The generic table groups the ResNet seeds; the paper's table is maco_table.md /
maco_table.json (every metric per parameterisation, mean ± std over the three models, and per
model) and maco_spectra.png, written by the render hook. Grids and α maps are in
fv_<model>/featviz/{grid,alpha,spectra}.png.
"""

import json
import os

import numpy as np

from jaxcv.sweep import Column, Row, Table, parse_table_arg

MODELS = {'resnet_s0': ('resnet', 0), 'resnet_s1': ('resnet', 1), 'vit': ('vit', 0)}
PARAMS = (('maco', 'MACO'), ('fourier', 'Fourier'), ('pixel', 'Pixel'),
          ('mag_phase', 'Mag+phase'))
METRICS = (('logit', 'target logit', 1), ('prob', 'target prob', 1), ('transfer', 'transfer %', 100),
           ('plausibility', 'plausibility', 1), ('fid_proxy', 'FID proxy', 1),
           ('kid_proxy', 'KID proxy', 1), ('spectrum_dist', 'spectrum dist', 1),
           ('hf_ratio', 'HF ratio', 1))


def _featviz_rows(results):
  return sorted(r for r in results if r.startswith('fv_'))


def render(results, workdir):
  """maco_table.md/json (parameterisation x metric, mean ± std over models, and per model) and
  maco_spectra.png (every model's spectra against the data's)."""
  from jaxcv.featviz import plots  # pylint: disable=import-outside-toplevel
  rows = _featviz_rows(results)
  if not rows:
    return
  table = {}
  for param, _ in PARAMS:
    for metric, _, scale in METRICS:
      values = [results[r].get(f'featviz/{param}/{metric}') for r in rows]
      values = [v * scale for v in values if v is not None]
      if values:
        table.setdefault(param, {})[metric] = {
            'mean': float(np.mean(values)), 'std': float(np.std(values, ddof=1)) if len(values) > 1
            else None, 'n': len(values), 'per_model': dict(zip(rows, values))}
  lines = [f'# MACO vs baselines: mean ± std over {len(rows)} models ({", ".join(rows)})', '',
           '| parameterisation | ' + ' | '.join(h for _, h, _ in METRICS) + ' |',
           '|---|' + '---|' * len(METRICS)]
  for param, label in PARAMS:
    cells = []
    for metric, _, _ in METRICS:
      v = table.get(param, {}).get(metric)
      cells.append('' if v is None else f'{v["mean"]:.3g}' + (
          f' ± {v["std"]:.2g}' if v['std'] is not None else ''))
    lines.append(f'| {label} | ' + ' | '.join(cells) + ' |')
  lines += ['', '## Per model', '', '| model | parameterisation | ' +
            ' | '.join(h for _, h, _ in METRICS) + ' |', '|---|---|' + '---|' * len(METRICS)]
  for r in rows:
    for param, label in PARAMS:
      cells = [table.get(param, {}).get(m, {}).get('per_model', {}).get(r) for m, _, _ in METRICS]
      lines.append(f'| {r} | {label} | ' + ' | '.join('' if c is None else f'{c:.3g}'
                                                      for c in cells) + ' |')
  lines += ['', 'transfer: top-1 agreement of the other two models with the target class; '
            'plausibility: cosine to the class-mean test feature in the model\'s own feature '
            'space; FID/KID proxy: in the independently trained judge network\'s features '
            '(not Inception-v3), 10 visualisations against the reference test images; spectrum '
            'dist: mean |log10 P - log10 P_data| over radial frequencies; HF ratio: share of '
            'power in the upper half of frequencies relative to the data\'s (1 = data).']
  with open(os.path.join(workdir, 'maco_table.md'), 'w') as f:
    f.write('\n'.join(lines) + '\n')
  with open(os.path.join(workdir, 'maco_table.json'), 'w') as f:
    json.dump(table, f, indent=2)
  spectra, styles, reference = {}, {}, None
  for k, r in enumerate(rows):
    path = os.path.join(workdir, r, 'featviz', 'featviz.json')
    if os.path.exists(path):
      with open(path) as f:
        stored = json.load(f)
      reference = stored['reference_spectrum']
      for colour, (param, label) in enumerate(PARAMS):
        if param in stored['spectra']:
          key = f'{label} ({r[3:]})'
          spectra[key] = np.array(stored['spectra'][param])
          styles[key] = {'color': f'C{colour}',
                         'linestyle': plots.LINE_STYLES[k % len(plots.LINE_STYLES)]}
  if spectra and reference is not None:
    plots.save(plots.spectra_figure(spectra, np.array(reference), 'CIFAR-10 test', styles),
               os.path.join(workdir, 'maco_spectra.png'))


def get_table(arg=None):
  a = parse_table_arg(arg)
  preset = f'preset={a.preset}'
  rows = [Row('judge', config='configs/maco/classifier.py', arg=f'{preset},arch=judge,seed=100',
              cost=1.0, show=False)]
  for name, (arch, seed) in MODELS.items():
    rows.append(Row(name, config='configs/maco/classifier.py',
                    arg=f'{preset},arch={arch},seed={seed}', cost=1.5, show=False))
  for name, (arch, _) in MODELS.items():
    others = [m for m in MODELS if m != name]
    rows.append(Row(f'fv_{name}', config='configs/maco/featviz.py',
                    arg=(f'{preset},run={{{name}}},transfer=' + '+'.join(f'{{{m}}}' for m in others)
                         + ',judge={judge}'),
                    depends_on=(name, *others, 'judge'), group=f'fv_{arch}', cost=1.0))
  columns = []
  for param, label in PARAMS:
    columns += [Column(f'{label} transfer %', f'featviz/{param}/transfer', scale=100, digits=1),
                Column(f'{label} plaus.', f'featviz/{param}/plausibility', digits=3)]
  columns += [Column(f'{label} logit', f'featviz/{param}/logit', digits=1) for param, label in PARAMS]
  return Table(
      name=f'MACO feature visualisation, CIFAR-10 ({a.preset} preset)', rows=rows,
      columns=columns,
      claim=('MACO matches the data spectrum and beats the Fourier and pixel parameterisations on '
             'transferability and plausibility, more so on the ViT; its raw target logit is lower'),
      description=('fv_resnet: two ResNet seeds (mean ± std); fv_vit: one ViT. Every metric per '
                   'parameterisation over all three models: maco_table.md.'),
      render=render)
