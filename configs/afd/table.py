"""AFD's table (arXiv 2401.14707, docs/afd.md): a natural model per seed, vAFT and AFD (and its
ablations) fine-tuned from it, each evaluated clean, under PGD-20 and under the attack ensemble.

  python -m jaxcv.sweep --table configs/afd/table.py:cpu --workdir runs/afd
  python -m jaxcv.sweep --table configs/afd/table.py:gpu,seeds=3 --workdir runs/afd

Rows per seed s: natural_s (configs/afd/natural.py) -> vaft_s, afd_s, afd_code_faithful_s,
afd_gamma0_s, afd_ab0_s (fine-tuned from natural_s) -> eval_<method>_s (configs/afd/evaluate.py
on the fine-tuned weights). A table line is a method: mean ± std over the seeds of its eval rows.
Presets:
  runlocal  a small CNN on the shipped CIFAR-10 sample, a few steps, vAFT and AFD only (tests)
  cpu       width-16 ResNet, float32: natural 4 epochs on the first 10,000 training images,
            fine-tuning 1 epoch on the first 4,000 with PGD-5; attacks on `examples` test images
            (default 300) with APGD-10 and 2 targets; one natural model that every fine-tuning
            seed starts from, the ablations at seed 0 only (about an hour on an idle 2-core
            machine)
  gpu       ResNet-18, bf16: natural 10 epochs, fine-tuning 2 epochs, every test image
Options: dataset (';' for a comma inside it), seeds, examples (0: all 10,000), natural_epochs,
finetune_epochs, apgd_steps, targets, methods (';'-separated subset of
vaft;afd;afd_code_faithful;afd_gamma0;afd_ab0), natural_seeds (natural models; fine-tuning seed s
starts from natural_s<s mod natural_seeds>), ablation_seeds (seeds of the methods other than
vAFT and AFD).
"""

from jaxcv.sweep import Column, Row, Table, parse_table_arg

# method -> (config file, extra argument); all fine-tune the seed's natural model.
METHODS = {
    'vaft': ('configs/afd/vaft.py', ''),
    'afd': ('configs/afd/afd.py', ''),
    'afd_code_faithful': ('configs/afd/afd.py', 'mode=code_faithful'),
    'afd_gamma0': ('configs/afd/afd_no_alignment.py', ''),
    'afd_ab0': ('configs/afd/afd_no_disentangler.py', ''),
}
MAIN = ('vaft', 'afd')  # The comparison; the other methods are ablations.
PRESETS = {
    'runlocal': dict(common='runlocal,model=small_cnn,eval_examples=64',
                     natural='', finetune='batch=32', seeds=1, examples=64, apgd_steps=5,
                     targets=2, eval_batch=32, methods='vaft;afd'),
    'cpu': dict(common='model=resnet_tiny,dtype=float32,eval_examples=200',
                natural='epochs=4,batch=128,lr=0.2,train_examples=10000',
                finetune='epochs=1,batch=128,pgd_steps=5,train_examples=4000', seeds=3,
                examples=300, apgd_steps=10, targets=2, eval_batch=500,
                methods='vaft;afd;afd_gamma0;afd_ab0', natural_seeds=1, ablation_seeds=1),
    'gpu': dict(common='eval_examples=1000', natural='epochs=10', finetune='epochs=2,batch=512',
                seeds=3, examples=0, apgd_steps=100, targets=9, eval_batch=500,
                methods=';'.join(METHODS)),
}
REFERENCE = {  # The paper's CIFAR-10 ResNet-18 numbers (Clean / PGD-20 / AutoAttack).
    'afd': {'Clean': 84.9, 'PGD-20': 52.7, 'Attack ensemble': 47.4},
    'vaft': {'Clean': 83.9, 'PGD-20': 51.4, 'Attack ensemble': 45.5},
}


def get_table(arg=None):
  a = parse_table_arg(arg, dataset='', seeds=0, examples=-1, natural_epochs=0.0,
                      finetune_epochs=0.0, apgd_steps=0, targets=0, methods='', natural_seeds=0,
                      ablation_seeds=0)
  p = dict(PRESETS[a.preset])
  p['common'] += ',dataset=' + (a.dataset or ('cifar10_sample' if a.preset == 'runlocal'
                                              else 'cifar10'))
  seeds = a.seeds or p['seeds']
  examples = p['examples'] if a.examples < 0 else a.examples
  apgd_steps, targets = a.apgd_steps or p['apgd_steps'], a.targets or p['targets']
  methods = [m for m in (a.methods or p['methods']).split(';') if m]
  natural = ','.join(x for x in (p['common'], p['natural'],
                                 f'epochs={a.natural_epochs}' if a.natural_epochs else '') if x)
  finetune = ','.join(x for x in (p['common'], p['finetune'],
                                  f'epochs={a.finetune_epochs}' if a.finetune_epochs else '') if x)
  evaluate = (f'{p["common"]},examples={examples},apgd_steps={apgd_steps},targets={targets},'
              f'batch={p["eval_batch"]}')
  natural_seeds = min(a.natural_seeds or p.get('natural_seeds', seeds), seeds)
  ablation_seeds = min(a.ablation_seeds or p.get('ablation_seeds', seeds), seeds)
  rows = []
  for seed in range(natural_seeds):
    start = f'natural_s{seed}'
    rows.append(Row(start, config='configs/afd/natural.py', arg=f'{natural},seed={seed}',
                    cost=2.0, show=False))
    rows.append(Row(f'eval_natural_s{seed}', config='configs/afd/evaluate.py',
                    arg=f'{evaluate},init={{{start}}}', depends_on=(start,), group='natural',
                    cost=0.5))
  # vAFT and AFD for every seed first, the ablations after: a time-limited sweep reaches the
  # comparison the table is about before the ablations.
  order = [(seed, m) for m in methods if m in MAIN for seed in range(seeds)]
  order += [(seed, m) for m in methods if m not in MAIN for seed in range(ablation_seeds)]
  for seed, method in sorted(order, key=lambda sm: (sm[1] not in MAIN, sm[0])):
    start = f'natural_s{seed % natural_seeds}'  # Fine-tuning seed s starts from this model.
    config, extra = METHODS[method]
    name = f'{method}_s{seed}'
    rows.append(Row(name, config=config, depends_on=(start,), cost=2.0, show=False,
                    arg=','.join(x for x in (finetune, extra, f'seed={seed}',
                                             f'init={{{start}}}') if x)))
    rows.append(Row(f'eval_{name}', config='configs/afd/evaluate.py', group=method,
                    arg=f'{evaluate},init={{{name}}}', depends_on=(name,), cost=0.5))
  attacked = 'all 10,000' if not examples else f'{examples:,}'
  return Table(
      name=f'AFD vs vAFT ({a.preset} preset, {seeds} seed{"s" * (seeds > 1)})', rows=rows,
      columns=[Column('Clean', 'robust/clean_accuracy', scale=100),
               Column('PGD-20', 'robust/pgd20_s0.003_accuracy', scale=100),
               Column('Attack ensemble', 'robust/worst_case_accuracy', scale=100)],
      reference=REFERENCE, plot_column='PGD-20',
      claim='AFD is more robust than vAFT (PGD-20, AutoAttack) at similar clean accuracy',
      description=(f'Natural training `{natural}` ({natural_seeds} model'
                   f'{"s" * (natural_seeds > 1)}; fine-tuning seed s starts from natural_s<s mod '
                   f'{natural_seeds}>); fine-tuning `{finetune}`, ablations at '
                   f'{ablation_seeds} seed{"s" * (ablation_seeds > 1)}; evaluation '
                   f'`{evaluate}`. Every column on the same {attacked} test images, L-inf '
                   f'eps 8/255, BN in eval mode, EMA weights. PGD-20 at step 0.003 (the paper '
                   f'code\'s). Attack ensemble: the worst case of APGD-CE and APGD-T '
                   f'({apgd_steps} steps, {targets} targets), an upper bound on AutoAttack '
                   'robust accuracy, not the paper\'s AA column.'),
      render=_render)


def _render(results, workdir):
  from jaxcv.evaluators import feature_gap_plot  # pylint: disable=import-outside-toplevel
  feature_gap_plot.plot_runs(workdir, [name for name in results if not name.startswith('eval_')])
