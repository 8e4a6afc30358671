"""SAN's table (arXiv 2211.14513, docs/san.md): SAN vs the IIC and PiCIE-style baselines (same
pixel encoder), and SAN without reconstruction / without orthogonality, on CamVid.

  python -m jaxcv.sweep --table configs/san/table.py:cpu --workdir runs/san --deadline 1500
  python -m jaxcv.sweep --table configs/san/table.py:gpu --workdir runs/san --deadline 840

Rows <method>_s<seed> for method in san, iic, picie, san_no_rec, san_no_orth, san_orth_s_only
(the spec's suggested orthogonality: on the generated S only, weight 0.1, L_Rec weight 1); seed 0
of every method first, so a deadline cuts whole seeds, not methods. Every row is scored on CamVid test
(233 images; cpu preset: downscaled to 96x128) with K = 11 clusters, Hungarian-matched over the
whole split (transductive), plus cluster usage and the alignment / uniformity of the L2-normalised
pixel embeddings. The render hook writes san_examples.png (the last seed of each method: image,
ground truth, matched prediction) and san_table.md.
Options: seeds (default 3; runlocal 1), data (camvid | textures), methods ('+'-separated subset).
"""

import json
import os

from jaxcv.sweep import Column, Row, Table, parse_table_arg

METHODS = {
    'san': ('configs/san/san.py', ''),
    'iic': ('configs/san/iic.py', ''),
    'picie': ('configs/san/picie.py', ''),
    'san_no_rec': ('configs/san/san.py', 'ablation=no_rec'),
    'san_no_orth': ('configs/san/san.py', 'ablation=no_orth'),
    # The spec's suggested form: orthogonality on the generated S only, weight 0.1, L_Rec 1.
    'san_orth_s_only': ('configs/san/san.py', 'orth_on=generated,orth=0.1,rec=1.0'),
}
# Relative row times (IIC and PiCIE run the encoder on two views).
COSTS = {'san': 1.0, 'iic': 1.5, 'picie': 1.5, 'san_no_rec': 1.0, 'san_no_orth': 1.0,
         'san_orth_s_only': 1.0}


def get_table(arg=None):
  a = parse_table_arg(arg, seeds=3, data='', methods='+'.join(METHODS))
  seeds = 1 if a.preset == 'runlocal' else a.seeds
  methods = [m for m in a.methods.split('+') if m]
  unknown = sorted(set(methods) - set(METHODS))
  if unknown:
    from jaxcv.errors import ConfigError  # pylint: disable=import-outside-toplevel
    raise ConfigError(f'unknown method {unknown[0]!r}; known: {", ".join(METHODS)}')
  rows = []
  for seed in range(seeds):
    for method in methods:
      config, extra = METHODS[method]
      arg_text = ','.join(filter(None, (f'preset={a.preset}', f'seed={seed}',
                                        f'data={a.data}' if a.data else '', extra)))
      rows.append(Row(f'{method}_s{seed}', config=config, arg=arg_text, group=method,
                      cost=COSTS[method]))
  data_name = {'textures': 'synthetic texture regions', 'camvid': 'CamVid'}.get(
      a.data or ('textures' if a.preset == 'runlocal' else 'camvid'), a.data)
  columns = [Column('Pixel acc (%)', 'seg/pixel_accuracy', scale=100, digits=1),
             Column('mIoU (%)', 'seg/miou', scale=100, digits=1),
             Column('Clusters used (of K)', 'seg/clusters_used', digits=1),
             Column('Usage entropy (norm.)', 'seg/cluster_entropy_norm', digits=2),
             Column('Uniformity', 'geometry/uniformity', digits=2),
             Column('Alignment', 'geometry/alignment', digits=3)]
  return Table(
      name=f'SAN vs IIC / PiCIE-style on {data_name} ({a.preset} preset)', rows=rows,
      columns=columns,
      claim='SAN keeps all K clusters in use, with better (lower) uniformity and higher '
            'Hungarian-matched pixel accuracy and mIoU than IIC; without L_Rec or without '
            'orthogonality the collapse comes back (fewer clusters, uniformity towards 0)',
      description='K = number of classes (11 for CamVid), transductive Hungarian matching on '
                  'the scored split; clusters used: clusters holding > 0.1% of the labelled '
                  'pixels; usage entropy / log K; uniformity log E exp(-2||f_i - f_j||^2) and '
                  'alignment E||f(x) - f(x+)||^2 of the L2-normalised pixel embeddings (lower '
                  'is better for both; 0 uniformity = total collapse). No pretraining anywhere.',
      render=render)


def render(results, workdir):
  """san_examples.png: one row per method (its last seed), side by side (each row's evaluator
  wrote seg/examples.png); san_table.md / .json: the values of every row."""
  lines = ['| row | pixel acc | mIoU | clusters used | entropy | uniformity | alignment |',
           '|---|---|---|---|---|---|---|']
  for name in sorted(results):
    s = results[name]
    get = lambda key: s.get(key, float('nan'))
    lines.append(f'| {name} | {100 * get("seg/pixel_accuracy"):.1f} | {100 * get("seg/miou"):.1f} '
                 f'| {get("seg/clusters_used")} | {get("seg/cluster_entropy_norm"):.2f} '
                 f'| {get("geometry/uniformity"):.2f} | {get("geometry/alignment"):.3f} |')
  with open(os.path.join(workdir, 'san_table.md'), 'w') as f:
    f.write('\n'.join(lines) + '\n')
  with open(os.path.join(workdir, 'san_table.json'), 'w') as f:
    json.dump(results, f, indent=1, default=float)
  # One row per method: its last seed with a figure.
  latest = {}
  for name in sorted(results, key=lambda n: (n.rsplit('_s', 1)[0], int(n.rsplit('_s', 1)[1]))):
    path = os.path.join(workdir, name, 'seg', 'examples.png')
    if os.path.isfile(path):
      latest[name.rsplit('_s', 1)[0]] = (name, path)
  pictures = [latest[m] for m in METHODS if m in latest]
  if not pictures:
    return
  from matplotlib import image as mpimg  # pylint: disable=import-outside-toplevel
  from jaxcv.evaluators.artefacts import new_figure  # pylint: disable=import-outside-toplevel
  cols = min(3, len(pictures))
  rows = -(-len(pictures) // cols)
  figure = new_figure(figsize=(5.0 * cols, 4.0 * rows))
  for i, (name, path) in enumerate(pictures):
    axis = figure.add_subplot(rows, cols, i + 1)
    axis.imshow(mpimg.imread(path))
    axis.set_title(name, fontsize=10)
    axis.set_axis_off()
  figure.tight_layout()
  figure.savefig(os.path.join(workdir, 'san_examples.png'), dpi=100)
