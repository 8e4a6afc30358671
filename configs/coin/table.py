"""COIN's table (arXiv 2311.18403, docs/coin.md): every setting of configs/coin/resnet18.py as a
row, the alpha sweep, and the Θ proxies of the effective operators.

  python -m jaxcv.sweep --table configs/coin/table.py:cpu --workdir runs/coin
  python -m jaxcv.sweep --table configs/coin/table.py:gpu --workdir runs/coin --deadline 840

Presets (every row of a preset uses the same training protocol):
  runlocal  a few steps of a small CNN on the shipped CIFAR-10 sample (seconds; the tests)
  cpu       a width-16 ResNet, float32, on the first 8,000 (poisoned) CIFAR-10 training images
            for 5 epochs, PGD-3 adversarial training (about 50 minutes on an idle 2-core machine:
            100-150 s a row, PGD-AT about 3x that)
  gpu       ResNet-18, the `short` protocol (8 epochs, bf16) of configs/coin/resnet18.py, then
            every setting again on VGG-16, DenseNet-121 and MobileNetV2
Options: `dataset` (the base dataset; ';' for a comma inside it), `epochs` (> 0 replaces the
preset's), `pgd_steps` (the PGD-AT row's attack steps), `theta_size`, `theta_samples`, `archs`
(';'-separated model names; the paper averages ResNet-18, VGG-16, DenseNet-121 and MobileNetV2,
which is the `gpu` default; the other presets default to their single small model), `seeds`
(> 1: the claim rows clean / cuda / cuda_coin and huda / huda_coin again with training seeds
1..seeds-1, rows `<setting>_s<seed>`, each line a mean over seeds), `huda_study` (1: the rows
testing why HUDA fails, HUDA_STUDY below).
Rows run in the order a time-limited sweep should: the claim first (clean, CUDA, CUDA+COIN),
then rows whose training program is one of those two, then rows with programs of their own,
the alpha sweep (first architecture only), then the other architectures' rows (named
`<setting>_<arch>`), claim rows first. With several architectures a table line is a setting's
mean over the architectures (n = architectures), as the paper's numbers are; coin_table.md
keeps every architecture's row.
"""

from jaxcv.sweep import Column, Row, Table, parse_table_arg

from . import resnet18

CONFIG = 'configs/coin/resnet18.py'
ORDER = ('clean', 'cuda', 'cuda_coin', 'cuda_jpeg', 'cuda_grayscale', 'clean_coin', 'vuda',
         'vuda_coin', 'huda', 'huda_coin', 'cuda_cutout', 'cuda_mixup', 'cuda_cutmix',
         'cuda_pgd_at')
COST = {'cuda_pgd_at': 3.0}  # PGD-10 adversarial training: about 3x a plain step at this size.
# DenseNet-121's forward is 1.8x ResNet-18's FLOPs (XLA's count at 32x32; VGG-16 0.5x,
# MobileNetV2 0.2x, kept at 1: small and depthwise convs run far below peak). Not yet timed.
ARCH_COST = {'densenet121': 2.0}

PRESETS = {
    'runlocal': 'protocol=short,runlocal,model=small_cnn',
    'cpu': 'protocol=short,model=resnet_tiny,epochs=5,batch=128,train_examples=8000',
    'gpu': 'protocol=short',
}
DATASETS = {'runlocal': 'cifar10_sample', 'cpu': 'cifar10', 'gpu': 'cifar10'}
PGD_STEPS = {'cpu': 3}  # The PGD-AT row's attack steps where not the config's 10.
# The model each preset's rows train when `archs` is not given (first: the preset's own).
ARCHS = {'runlocal': ('small_cnn',), 'cpu': ('resnet_tiny',),
         'gpu': ('resnet18', 'vgg16', 'densenet121', 'mobilenetv2')}
SEEDED = ('clean', 'cuda', 'cuda_coin', 'huda', 'huda_coin')  # The rows `seeds` repeats.
# Why does HUDA not reproduce? Each row changes one thing (docs/coin.md, "The HUDA study"):
#   flip: a horizontal flip mirrors a horizontal (1 x k) kernel, so each class is seen through
#     two kernels, while a vertical kernel is flip-invariant; vuda_noflip is the control.
#   size: a longer kernel (1 x 5, 1 x 7) carries more class-specific structure.
#   calibration: larger off-peak weights (pb 0.6) blur more.
HUDA_STUDY = {
    'huda_noflip': ('huda', 'flip=False'), 'huda_coin_noflip': ('huda_coin', 'flip=False'),
    'vuda_noflip': ('vuda', 'flip=False'),
    'huda_k5': ('huda', 'poison_size=5'), 'huda_k7': ('huda', 'poison_size=7'),
    'huda_k7_coin': ('huda_coin', 'poison_size=7'),
    'huda_pb0.6': ('huda', 'pb=0.6'),
}


def get_table(arg=None):
  a = parse_table_arg(arg, dataset='', epochs=0.0, pgd_steps=0, theta_size=0, theta_samples=16,
                      archs='', seeds=1, huda_study=0)
  archs = tuple(a.archs.split(';')) if a.archs else ARCHS[a.preset]
  pgd_steps = a.pgd_steps or PGD_STEPS.get(a.preset, 0)
  common = PRESETS[a.preset] + f',dataset={a.dataset or DATASETS[a.preset]}'
  if a.epochs:
    common += f',epochs={a.epochs}'
  if a.preset == 'cpu':
    common += ',dtype=float32'  # bf16 is emulated, and slow, on a CPU.
  if archs[0] != ARCHS[a.preset][0]:
    common = _with_model(common, archs[0])
  seeded = a.seeds > 1 and len(archs) == 1  # Several architectures: lines are over them.
  rows = [_setting_row(setting, setting, common, pgd_steps,
                       len(archs) > 1 or (seeded and setting in SEEDED))
          for setting in ORDER]
  if seeded:
    rows += [_setting_row(f'{setting}_s{seed}', setting, common, pgd_steps, True,
                          overrides={'seed': seed})
             for seed in range(1, a.seeds) for setting in SEEDED]
  if a.huda_study:
    rows += [_setting_row(name, setting, f'{common},{change}', pgd_steps, False)
             for name, (setting, change) in HUDA_STUDY.items()]
  for alpha in resnet18.ALPHA_SWEEP:
    if alpha != 2.0:  # 2.0 is the cuda_coin row.
      rows.append(Row(f'cuda_coin_alpha{alpha}', config=CONFIG,
                      arg=f'setting=cuda_coin,alpha={alpha},{common}',
                      labels={'training data': 'cuda', 'defense': f'coin (alpha {alpha})'}))
  rows.append(Row('theta', fn='jaxcv.unlearnable.report:theta_row', cost=0.1, show=False, kwargs={
      'config': f'{CONFIG}:setting=cuda_coin,{common}',
      'size': a.theta_size or (8 if a.preset == 'runlocal' else 0),
      'samples_per_class': 4 if a.preset == 'runlocal' else a.theta_samples}))
  rows += [_setting_row(f'{setting}_{arch}', setting, _with_model(common, arch), pgd_steps,
                        True, ARCH_COST.get(arch, 1.0))
           for setting in ORDER for arch in archs[1:]]
  reference = {name: {'Test accuracy (%)': value} for name, value in resnet18.REFERENCE.items()}
  return Table(
      name=f'COIN on {a.dataset or DATASETS[a.preset]} ({a.preset} preset)', rows=rows,
      columns=[Column('Test accuracy (%)', 'test/accuracy', scale=100)],
      labels=('training data', 'defense'), reference=reference,
      claim='COIN restores most of the clean accuracy lost to CUDA; other defenses do not',
      description=f'Every row: configs/coin/resnet18.py with `{common}`'
                  + (f'; lines average the architectures {", ".join(archs)} (rows '
                     '`<setting>_<arch>` swap the model)' if len(archs) > 1 else '')
                  + '. [R]: the paper\'s numbers (averaged over 4 architectures); [3P]: a '
                  'third-party ResNet-18 run.',
      render=_render)


def _with_model(common, model):
  """The config arguments `common` with the model replaced by `model`."""
  return ','.join([item for item in common.split(',') if not item.startswith('model=')]
                  + [f'model={model}'])


def _setting_row(name, setting, common, pgd_steps, grouped, arch_cost=1.0, overrides=None):
  """A row of the config family for `setting`; `grouped`: a line averaged over architectures
  or seeds."""
  poison, defense = resnet18.SETTINGS[setting]
  arg_text = f'setting={setting},{common}'
  if setting == 'cuda_pgd_at' and pgd_steps:
    arg_text += f',pgd_steps={pgd_steps}'
  return Row(name, config=CONFIG, arg=arg_text, cost=COST.get(setting, 1.0) * arch_cost,
             group=setting if grouped else '', overrides=overrides or {},
             labels={'training data': poison or 'clean', 'defense': defense or 'none'})


def _render(results, workdir):
  del results
  from jaxcv.unlearnable import report  # pylint: disable=import-outside-toplevel
  report.write_table(workdir)
