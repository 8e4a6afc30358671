"""ERM++ vs ERM on DomainBed's protocol, with one ablation per component (docs/erm_pp.md).

  python -m jaxcv.sweep --table configs/erm_pp/table.py:cpu --workdir runs/erm_pp

Per (dataset, held-out env, trial) the chain is
  pass1   ERM on the source envs' `in` parts, keeping the uniform average beside the trained
          weights (averaging does not feed back, so the trained weights are exactly ERM's);
  erm     DomainBed's training-domain validation on pass1's trained weights  -> ERM
  no_fd   the same on pass1's averaged weights                             -> ERM++ without FD
  pass2   the source envs whole for the step no_fd selected, averaged      -> ERM++ (LT+FD+MPA)
and on the ablation folds
  no_mpa  pass2 without averaging, its length from the trained weights'   -> ERM++ without MPA
  ws      linear probing first: probe -> pass1 -> pass2 from the probe     -> ERM++ with WS
  bn      the BatchNorm CNN (mnist_cnn_bn) with unfrozen BN (ERM++ and ERM), and frozen BN
          (DomainBed's historical setting)                                 -> ERM++ without UBN
  miro    (option miro=1, every fold of the preset) pass1 and pass2 with the MIRO regulariser
          -> MIRO (pass1's trained weights, training-domain validation) and ERM++ +MIRO
Presets:
  runlocal  tests: fake data, 8x8 images, seconds.
  cpu       the committed 2-core run (results/2026-12-07_cpu_erm_pp_budget): all six RotatedMNIST
            folds, then ColoredMNIST -90%, x 3 trials; pass 1 = 600 steps of 2 images per source
            env (DomainBed: 5001 of 64), evaluated at steps 200/400/600 on 300 examples per
            split; the ablation chains (WS, BN, frozen BN; MIRO with miro=1) on the 30-degree
            fold. Measured on the shared, loaded 2-core machine (one core, jax 0.10): pass 1
            55-280 s, pass 2 18-190 s with the load and dataset; the 105 rows without the
            ablations took 56 min, the MIRO, WS and BN chains 7-9 min each (3 trials).
  cpu,short=1  the earlier run (results/2026-12-07_cpu_erm_pp): 100 steps of 8 per env, 2 trials,
            the ablation chains (WS, BN, frozen BN) and PACS sketch (scratch / CIFAR-10 backbone).
  gpu       every fold of the three datasets, 3 trials, 2,000 steps of 64 per env, ablations.
Options: seeds=N, miro=1 (adds the MIRO lines), short=1 (with cpu).
"""

from __future__ import annotations

import functools
import math
import os

from jaxcv.sweep import Column, Row, Table, parse_table_arg

CONFIG = 'configs/erm_pp/erm_pp.py'
ENVS = {
    'rotated_mnist': ('0', '15', '30', '45', '60', '75'),
    'colored_mnist': ('+90%', '+80%', '-90%'),
    'pacs': ('art_painting', 'cartoon', 'photo', 'sketch'),
}
SHORT = {'rotated_mnist': 'RMNIST', 'colored_mnist': 'CMNIST', 'pacs': 'PACS'}
# Row-name-safe spellings of the environments.
SAFE = {'+90%': 'p90', '+80%': 'p80', '-90%': 'm90'}
METHODS = ('ERM', 'ERM++', 'ERM++ -FD', 'ERM++ -MPA', 'ERM++ +WS', 'ERM (BN)', 'ERM++ (BN)',
           'ERM++ (BN) -UBN', 'ERM (pretrained)', 'ERM++ (pretrained)', 'MIRO', 'ERM++ +MIRO')
# DomainBed's ERM (training-domain validation, 5001 steps, ResNet-50 ImageNet init for PACS).
REFERENCE = {'rotated_mnist': {'0': 95.9, '15': 98.9, '30': 98.8, '45': 98.9, '60': 98.9,
                               '75': 96.4, 'Avg': 98.0},
             'colored_mnist': {'+90%': 71.7, '+80%': 72.9, '-90%': 10.0, 'Avg': 51.5},
             'pacs': {'Avg': 85.5}}

# What each preset trains. steps: pass-1 length; per_domain: examples per env per step;
# eval_every / eval_examples: pass-1 evaluation (examples per evaluated split);
# folds: held-out envs per dataset; ablate: {dataset: folds} the ablation variants run on;
# pacs: extra arguments of the PACS runs; pretrain: quickstart.py's argument for the CIFAR-10
# backbone the 'pre' variant of PACS starts from ('' = none).
PRESETS = {
    'runlocal': dict(steps=10, per_domain=8, eval_every=5, eval_examples=32, linear_steps=4,
                     image_size=8, folds={'rotated_mnist': ('0',)},
                     ablate={'rotated_mnist': ('0',)}, variants=('ws',), seeds=1,
                     extra='runlocal', pacs='', pretrain=''),
    # The committed 2-core run (results/2026-12-07_cpu_erm_pp_budget): every RotatedMNIST fold
    # and ColoredMNIST -90% (last) x 3 trials, 600 steps of 2 images per source env (DomainBed's
    # step count is 5001, of 64 per env); the ablation chains on the 30-degree fold.
    'cpu': dict(steps=600, per_domain=2, eval_every=200, eval_examples=300, linear_steps=100,
                image_size=0, folds={'rotated_mnist': ('0', '75', '15', '30', '45', '60'),
                                     'colored_mnist': ('-90%',)},
                last=('colored_mnist',), ablate={'rotated_mnist': ('30',)},
                variants=('ws', 'bn', 'bn_frozen'), seeds=3, extra='', pacs='', pretrain=''),
    # The earlier, shorter cpu run (results/2026-12-07_cpu_erm_pp): `cpu,short=1`.
    'cpu_short': dict(steps=100, per_domain=8, eval_every=25, eval_examples=300, linear_steps=20,
                image_size=0, folds={'rotated_mnist': ('0', '75', '15', '30', '45', '60'),
                                     'colored_mnist': ('-90%',), 'pacs': ('sketch',)},
                ablate={'rotated_mnist': ('0',)}, variants=('ws', 'bn', 'bn_frozen'), seeds=2,
                extra='',
                pacs='model=resnet_tiny,image_size=32,lr=5e-4', pretrain='epochs=3'),
    'gpu': dict(steps=2000, per_domain=64, eval_every=100, eval_examples=0, linear_steps=200,
                image_size=0, folds=dict(ENVS), ablate={'rotated_mnist': ('0', '75')},
                variants=('ws', 'bn', 'bn_frozen'), seeds=3, extra='',
                pacs='model=resnet_tiny,image_size=32,per_domain=32,lr=5e-4',
                pretrain='epochs=15'),
}


def _name(*parts) -> str:
  return '_'.join(SAFE.get(str(p), str(p)) for p in parts)


# Variants of the chain: the extra config argument, the ERM++ line's name, the ERM line's name
# (when its selection row is wanted), linear probing first, the row the runs start from.
VARIANTS = {
    '': dict(arg='', method='ERM++', erm='ERM', ablate=True),
    'ws': dict(arg='', method='ERM++ +WS', probe=True),
    'bn': dict(arg='model=mnist_cnn_bn', method='ERM++ (BN)', erm='ERM (BN)'),
    'bn_frozen': dict(arg='model=mnist_cnn_bn,freeze_bn', method='ERM++ (BN) -UBN'),
    'pre': dict(arg='fresh_head', method='ERM++ (pretrained)', erm='ERM (pretrained)',
                init='pretrain'),
    # The optional regulariser (`miro=1`): pass 1's trained weights are ERM + MIRO.
    'miro': dict(arg='miro', method='ERM++ +MIRO', erm='MIRO'),
}
SELECT = 'jaxcv.domain_generalization.erm_pp:select'


def chain_rows(dataset: str, fold: str, seed: int, p: dict, variant: str = '') -> list[Row]:
  """pass1 -> (erm, no_fd selections) -> pass2 (-> no_mpa) for one (dataset, fold, trial), in
  one of the VARIANTS of the recipe."""
  v = VARIANTS[variant]
  base = _name(SHORT[dataset], fold, f's{seed}', *([variant] if variant else []))
  labels = lambda method: {'dataset': SHORT[dataset], 'test env': fold, 'method': method}
  line = lambda what: f'{SHORT[dataset]}/{fold}/{what}'
  common = [f'dataset={dataset}', f'test={fold}', f'trial={seed}',
            f'per_domain={p["per_domain"]}', f'eval_every={p["eval_every"]}',
            f'eval_examples={p["eval_examples"]}',
            f'average_start={max(1, round(0.12 * p["steps"]))}']  # 600 of DomainBed's 5001.
  if p['image_size']:
    common.append(f'image_size={p["image_size"]}')
  common += [x for x in (p['pacs'] if dataset == 'pacs' else '', v['arg'], p['extra']) if x]
  arg = lambda *items: ','.join([*common, *items])
  rows, start = [], []
  if v.get('probe'):
    rows.append(Row(name=f'{base}_probe', config=CONFIG, cost=0.3, group=line('ws/probe'),
                    arg=arg('stage=probe', f'linear_steps={p["linear_steps"]}', 'linear_lr=1e-3'),
                    labels=labels('probe')))
    start = [f'{base}_probe']
  elif v.get('init'):
    start = [v['init']]
  init = [f'init={{{start[0]}}}'] if start else []
  pass1, pass2 = f'{base}_pass1', f'{base}_pass2'
  rows.append(Row(name=pass1, config=CONFIG, arg=arg('stage=train', f'steps={p["steps"]}', *init),
                  depends_on=tuple(start), cost=1.3, group=line(f'{variant or "main"}/pass1'),
                  labels=labels('pass 1 (last step)')))
  if v.get('erm'):
    rows.append(Row(name=f'{base}_erm', fn=SELECT, kwargs={'run': f'{{{pass1}}}', 'weights': 'plain'},
                    depends_on=(pass1,), cost=0.01, group=line(v['erm']), labels=labels(v['erm'])))
  if v.get('ablate'):
    rows.append(Row(name=f'{base}_no_fd', fn=SELECT, kwargs={'run': f'{{{pass1}}}', 'weights': 'ema'},
                    depends_on=(pass1,), cost=0.01, group=line('ERM++ -FD'),
                    labels=labels('ERM++ -FD')))
  rows.append(Row(name=pass2, config=CONFIG, arg=arg('stage=full', f'steps_from={{{pass1}}}', *init),
                  depends_on=(pass1, *start), cost=1.0, group=line(v['method']),
                  labels=labels(v['method'])))
  if v.get('ablate'):
    # Pass 2's trained weights beside its average: the same run, the same length, no MPA.
    rows.append(Row(name=f'{base}_no_mpa', fn='jaxcv.domain_generalization.erm_pp:renamed',
                    kwargs={'run': f'{{{pass2}}}', 'key': 'test_in_plain/acc/mean'},
                    depends_on=(pass2,), cost=0.01, group=line('ERM++ -MPA'),
                    labels=labels('ERM++ -MPA')))
  return rows


def get_table(arg=None) -> Table:
  a = parse_table_arg(arg, seeds=0, short=False, miro=False)
  preset = 'cpu_short' if a.short and a.preset == 'cpu' else a.preset
  p = dict(PRESETS[preset])
  seeds = a.seeds or p['seeds']
  rows = []
  if p.get('pretrain'):  # PACS from a backbone pretrained on CIFAR-10 in jaxcv.
    rows.append(Row(name='pretrain', config='configs/quickstart.py', arg=p['pretrain'], cost=1.0,
                    labels={'dataset': 'CIFAR-10', 'method': 'pretraining'}))
  # In the order of what matters most, every trial of a line before the next line, so that a
  # sweep stopped by its deadline leaves whole lines: the first two folds of each dataset, then
  # the ablations, then the other folds; the datasets in p['last'] after all of that.
  last = p.get('last', ())
  for group in ([d for d in p['folds'] if d not in last], [d for d in p['folds'] if d in last]):
    folds_of = {d: p['folds'][d] for d in group}
    positions = max((len(f) for f in folds_of.values()), default=0)
    for position in range(positions):
      for dataset, folds in folds_of.items():
        if position >= len(folds):
          continue
        for seed in range(seeds):
          rows += chain_rows(dataset, folds[position], seed, p)
          if dataset == 'pacs' and p.get('pretrain'):
            rows += chain_rows(dataset, folds[position], seed, p, 'pre')
      if position == min(1, positions - 1) and not set(group) & set(last):
        for dataset, folds in p['ablate'].items():
          for fold in folds:
            for variant in p['variants']:
              for seed in range(seeds):
                rows += chain_rows(dataset, fold, seed, p, variant)
  if a.miro:  # MIRO's lines after everything else, on every fold and trial of the preset.
    rows += [row for dataset, folds in p['folds'].items() for fold in folds
             for seed in range(seeds) for row in chain_rows(dataset, fold, seed, p, 'miro')]
  return Table(
      name='erm_pp', rows=rows, labels=('dataset', 'test env', 'method'),
      columns=[Column('test-env acc (in split)', 'test_in/acc/mean', scale=100, digits=1),
               Column('selected step', 'selected/step', digits=0)],
      reference={f'{SHORT[d]}/{env}/ERM': {'test-env acc (in split)': v}
                 for d, envs in REFERENCE.items() for env, v in envs.items() if env != 'Avg'},
      spread='sem',
      claim='ERM++ (full-data second pass for the selected length, uniform parameter averaging) '
            '>= ERM under DomainBed training-domain validation; ColoredMNIST -90% stays near 10%',
      description=f'preset {a.preset}: {seeds} trial(s); pass-1 steps {p["steps"]}, '
                  f'{p["per_domain"]} examples per env per step',
      render=functools.partial(render, rows=rows))


# ---------------------------------------------------------------------------------------------
# DomainBed's table (mean +/- standard error over trials per env, then the average) and a plot
# ---------------------------------------------------------------------------------------------

def domainbed_tables(results: dict, rows: list[Row]) -> dict:
  """{dataset: {method: {env: (mean, se, n)}}} from the rows' test_in accuracies (in %)."""
  from jaxcv.domain_generalization.selection import mean_and_error  # pylint: disable=import-outside-toplevel
  values: dict = {}
  for row in rows:
    method = row.labels.get('method')
    if method not in METHODS or row.name not in results:
      continue
    value = results[row.name].get('test_in/acc/mean')
    if value is not None:
      values.setdefault(row.labels['dataset'], {}).setdefault(method, {}).setdefault(
          row.labels['test env'], []).append(100 * float(value))
  return {d: {m: {env: (*mean_and_error(v), len(v)) for env, v in envs.items()}
              for m, envs in methods.items()} for d, methods in values.items()}


def render(results: dict, workdir: str, rows: list[Row]) -> None:
  """domainbed.md (DomainBed's format: mean +/- SE per env, Avg over envs) and erm_pp.png."""
  tables = domainbed_tables(results, rows)
  lines = ['# ERM++ vs ERM, DomainBed format (test-env `in` accuracy %, mean ± SE over trials)', '']
  long_name = {v: k for k, v in SHORT.items()}
  for dataset, methods in tables.items():
    envs = [e for e in ENVS[long_name[dataset]]
            if any(e in per_env for per_env in methods.values())]
    lines += [f'## {dataset}', '', '| method | ' + ' | '.join(envs) + ' | Avg (these envs) |',
              '|---' * (len(envs) + 2) + '|']
    for method in METHODS:
      if method not in methods:
        continue
      cells = [methods[method].get(e) for e in envs]
      text = [f'{c[0]:.1f} ± {c[1]:.1f} (n={c[2]})' if c else '-' for c in cells]
      avg = (f'{sum(c[0] for c in cells) / len(cells):.1f}' if all(cells) else '-')
      lines.append(f'| {method} | ' + ' | '.join(text) + f' | {avg} |')
    ref = REFERENCE.get(long_name[dataset], {})
    shown = [ref[e] for e in envs if e in ref]
    ref_avg = (f'{sum(shown) / len(shown):.1f}' if len(shown) == len(envs)
               else f'{ref.get("Avg", "-")} (all envs)')
    lines.append('| DomainBed ERM (5001 steps) | ' + ' | '.join(
        str(ref.get(e, '-')) for e in envs) + f' | {ref_avg} |')
    lines.append('')
  with open(os.path.join(workdir, 'domainbed.md'), 'w') as f:
    f.write('\n'.join(lines))
  _plot(tables, os.path.join(workdir, 'erm_pp.png'))


def _plot(tables: dict, path: str) -> None:
  from matplotlib.figure import Figure  # pylint: disable=import-outside-toplevel
  panels = [(d, env) for d, methods in tables.items()
            for env in sorted({e for per_env in methods.values() for e in per_env})]
  if not panels:
    return
  fig = Figure(figsize=(max(5.0, 1.6 * len(panels)), 3.8))
  ax = fig.add_subplot()
  methods = [m for m in METHODS if any(m in t for t in tables.values())]
  width = 0.8 / max(len(methods), 1)
  for i, method in enumerate(methods):
    xs, ys, errs = [], [], []
    for x, (dataset, env) in enumerate(panels):
      cell = tables[dataset].get(method, {}).get(env)
      if cell:
        xs.append(x + (i - (len(methods) - 1) / 2) * width)
        ys.append(cell[0])
        errs.append(cell[1])
    ax.bar(xs, ys, width, yerr=errs, capsize=2, label=method)
  ax.set_xticks(range(len(panels)), [f'{d}\n{env}' for d, env in panels], fontsize=7)
  ax.set_ylabel('test-env accuracy (%)')
  lows = [c[0] for t in tables.values() for per_env in t.values() for c in per_env.values()]
  ax.set_ylim(max(0.0, math.floor(min(lows) / 10) * 10 - 10), 100)
  ax.legend(fontsize=7, ncol=2)
  ax.set_title('ERM++ components vs ERM (mean ± SE over trials)', fontsize=9)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
