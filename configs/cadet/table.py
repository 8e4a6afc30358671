"""CADet's table at CIFAR scale (arXiv 2210.01742, docs/cadet.md): SimCLR pre-training with its
linear probe, the MMD two-sample test's power against sample size (contrastive cosine kernel vs
Gaussian pixel kernel, with the type-I check), and single-sample detection (m_in, m_out, CADet)
of adversarial inputs crafted on a separately trained supervised classifier, novel classes
and corruptions.

  python -m jaxcv.sweep --table configs/cadet/table.py:cpu --workdir runs/cadet
  python -m jaxcv.sweep --table configs/cadet/table.py:gpu,seeds=3 --workdir runs/cadet

Rows: classifier (configs/broad/classifier.py, seed 100: the supervised model the attacks are
crafted on), random_encoder (the untrained encoder's linear probe, the floor), simclr_s<k> (configs/cadet/simclr.py, seed k, probe accuracy), cadet_s<k>
(configs/cadet/evaluate.py on simclr_s<k>) and two_sample_s<k> (jaxcv.cadet.two_sample on
simclr_s<k>; the Gaussian pixel kernel, which needs no encoder, only in two_sample_s0). The
render hook writes cadet_table.md / cadet_table.json / cadet_auroc.png (every split and setting)
and two_sample.md / power_curve.png. Options: seeds (default 2), shift (the two-sample test's
shifted sample: CIFAR-10.1 is not at hand here, so a mild corruption of CIFAR-10 test stands in
for it by default; `shift=cifar10_1` runs the paper's test where the files are).
"""

import json
import os

import numpy as np

from jaxcv.sweep import Column, Row, Table, parse_table_arg

CLASSIFIER_SEED = 100
CLASSIFIER = {'runlocal': 'preset=runlocal', 'cpu': 'preset=cpu,train_examples=10000',
              'gpu': 'preset=gpu'}
TWO_SAMPLE = {
    'runlocal': dict(sizes='10,20', trials=4, permutations=20, batch_size=100),
    'cpu': dict(sizes='50,100,200,500,1000', trials=50, permutations=100),
    'gpu': dict(sizes='50,100,200,500,1000,2000', trials=100, permutations=100),
}
SHIFT = {'runlocal': 'corrupt(kind=contrast,severity=5)',
         'cpu': 'corrupt(kind=gaussian_noise,severity=1)',
         'gpu': 'corrupt(kind=gaussian_noise,severity=1)'}
COST = {'classifier': 1.0, 'simclr': 3.0, 'cadet': 1.5, 'two_sample': 1.0}


def render(results, workdir):
  from jaxcv.cadet import benchmark, two_sample  # pylint: disable=import-outside-toplevel
  cadet_rows = sorted(r for r in results if r.startswith('cadet_s'))
  benchmark.render_seeds([os.path.join(workdir, r) for r in cadet_rows], workdir,
                         title='CADet-mini (CIFAR-10 ID)')
  runs = []
  for row in sorted(r for r in results if r.startswith('two_sample_s')):
    path = os.path.join(workdir, row, two_sample.RESULTS_FILE)
    if os.path.isfile(path):
      with open(path) as f:
        runs.append(json.load(f))
  if not runs:
    return
  title = f'MMD test, CIFAR-10 test vs {runs[0]["shift"]} ({len(runs)} encoder(s))'
  two_sample.plot_power(runs, os.path.join(workdir, 'power_curve.png'), title)
  lines = [f'# {title}', '', f'Rejection rate (%) at alpha = {runs[0]["alpha"]} over '
           f'{runs[0]["trials"]} draws, {runs[0]["permutations"]} permutations each; mean ± std '
           'over encoders where several. Type I: both samples from CIFAR-10 test (disjoint '
           'random samples, fresh every draw).', '', '| kernel | test | ' + ' | '.join(
               f'n={n}' for n in runs[0]['power'][next(iter(runs[0]['power']))]) + ' |']
  lines.append('|---|---|' + '---|' * len(runs[0]['power'][next(iter(runs[0]['power']))]))
  for kernel in runs[0]['power']:
    for what in ('power', 'type1'):
      with_kernel = [r for r in runs if kernel in r[what]]
      cells = []
      for n in with_kernel[0][what][kernel]:
        v = 100 * np.array([r[what][kernel][n]['rate'] for r in with_kernel])
        cells.append(f'{v.mean():.0f}' + (f' ± {v.std(ddof=1):.0f}' if len(v) > 1 else ''))
      lines.append(f'| {kernel} | {what} | ' + ' | '.join(cells) + ' |')
  with open(os.path.join(workdir, 'two_sample.md'), 'w') as f:
    f.write('\n'.join(lines) + '\n')


def get_table(arg=None):
  a = parse_table_arg(arg, seeds=2, shift='')
  p = a.preset
  rows = [Row('classifier', config='configs/broad/classifier.py',
              arg=f'{CLASSIFIER[p]},seed={CLASSIFIER_SEED}', cost=COST['classifier'], show=False),
          # The untrained encoder's probe: how much SimCLR adds to random convolutional features.
          Row('random_encoder', config='configs/cadet/simclr.py', arg=f'preset={p},seed=0',
              overrides={'total_steps': 0}, group='random_init', cost=0.2)]
  for seed in range(a.seeds):
    encoder = f'simclr_s{seed}'
    rows.append(Row(encoder, config='configs/cadet/simclr.py', arg=f'preset={p},seed={seed}',
                    group='simclr', cost=COST['simclr']))
    rows.append(Row(f'cadet_s{seed}', config='configs/cadet/evaluate.py',
                    arg=f'preset={p},run={{{encoder}}},classifier={{classifier}}',
                    depends_on=(encoder, 'classifier'), group='cadet', cost=COST['cadet']))
    kernels = 'cosine,gaussian' if seed == 0 else 'cosine'
    rows.append(Row(f'two_sample_s{seed}', fn='jaxcv.cadet.two_sample:table_row',
                    kwargs={'run': f'{{{encoder}}}', 'kernels': kernels,
                            'shift': a.shift or SHIFT[p], **TWO_SAMPLE[p]},
                    depends_on=(encoder,), group='two_sample', cost=COST['two_sample']))
  largest = TWO_SAMPLE[p]['sizes'].split(',')[-1]
  return Table(
      name=f'CADet-mini ({p} preset, {a.seeds} SimCLR encoder{"s" * (a.seeds > 1)})',
      rows=rows,
      columns=[Column('Probe acc', 'probe/accuracy', scale=100),
               Column('m_in adv', 'cadet/auroc/m_in/type/adversarial'),
               Column('CADet adv', 'cadet/auroc/cadet/type/adversarial'),
               Column('m_in novel', 'cadet/auroc/m_in/type/novel'),
               Column('m_out novel', 'cadet/auroc/m_out/type/novel'),
               Column('CADet novel', 'cadet/auroc/cadet/type/novel'),
               Column('CADet corr', 'cadet/auroc/cadet/type/corruption'),
               Column('CADet sanity', 'cadet/auroc/cadet/sanity'),
               Column(f'Power n={largest}', f'power/cosine/n{largest}'),
               Column(f'Type I n={largest}', f'type1/cosine/n{largest}')],
      claim=('m_in alone detects adversarial inputs well; m_out helps on far-OOD; the '
             'contrastive kernel gives the MMD test more power than a pixel kernel'),
      description=('AUROC in percent (OOD positive, 50 = chance) of ID CIFAR-10 test against '
                   'each shift type; power / type-I error in percent at alpha 0.05. Per split: '
                   'cadet_table.md, cadet_auroc.png; power curves: two_sample.md, '
                   'power_curve.png.'),
      render=render)
