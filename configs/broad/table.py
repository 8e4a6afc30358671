"""BROAD's table at CIFAR scale (arXiv 2308.11480, docs/broad.md): OOD detectors and score
ensembles against novel classes, adversarial (white-box and transfer), corrupted and multi-class
(mosaic) inputs; AUROC per split, per shift type and overall, mean ± std over ID models.

  python -m jaxcv.sweep --table configs/broad/table.py:cpu --workdir runs/broad
  python -m jaxcv.sweep --table configs/broad/table.py:gpu,seeds=3 --workdir runs/broad

Rows: id_s<k> (the ID classifier, seed k; configs/broad/classifier.py), transfer (a second model,
seed 100, that the transfer attacks are crafted on), broad_s<k> (configs/broad/evaluate.py on
id_s<k>: every split, detector and ensemble), and with `synthetic=1` (the gpu preset's
default) a `generator` row: a class-conditional diffusion UNet of the LDM-scaling family
(configs/ldm_scaling/cifar10_unet.py) whose samples are the synthetic split. The generic table
shows headline columns; the paper's table is broad_table.md / broad_table.json / broad_auroc.png
(detector x split heat map), written by the render hook from every broad_s<k> row. Presets as
in classifier.py and evaluate.py; options `seeds` (default 2), `synthetic` (0 / 1).
"""

import os

from jaxcv.sweep import Column, Row, Table, parse_table_arg

TRANSFER_SEED = 100
HEADLINE = (('ID acc', 'id_accuracy'), ('PGD white acc', 'attack_accuracy/pgd_white'),
            ('MSP', 'auroc/msp/overall'), ('Energy', 'auroc/energy/overall'),
            ('MDS-all', 'auroc/mds_all/overall'), ('KNN', 'auroc/knn/overall'),
            ('GMM', 'auroc/gmm/overall'), ('mean-z', 'auroc/mean_z/overall'),
            ('max-z', 'auroc/max_z/overall'), ('MSP on PGD white', 'auroc/msp/pgd_white'),
            ('GMM sanity', 'auroc/gmm/sanity'))


def render(results, workdir):
  from jaxcv.ood import broad  # pylint: disable=import-outside-toplevel
  rows = sorted(r for r in results if r.startswith('broad_s'))
  broad.render_seeds([os.path.join(workdir, r) for r in rows], workdir,
                     title='BROAD-mini (CIFAR-10 ID)')


# The synthetic split's generator per preset (configs/ldm_scaling/cifar10_unet.py arguments).
# cpu: a width-16 UNet without attention at 16x16 (CIFAR-10 downscaled; samples are upscaled to
# 32x32 for the classifier), a few CPU-minutes; gpu: the LDM-scaling family's c = 64 at 32x32.
GENERATOR = {
    'runlocal': 'runlocal,width=16,blocks=1,mult=1-2,attention=,steps=4,dtype=float32,'
                'checkpoints=1,dataset=cifar10_sample',
    'cpu': 'width=16,blocks=1,mult=1-2-2,attention=,steps=1500,batch=64,lr=1e-3,ema=0.995,'
           'warmup=50,dtype=float32,checkpoints=1,dataset=resized(height=16;width=16):cifar10',
    'gpu': 'width=64,blocks=2,steps=3000,batch=256,lr=5e-4,ema=0.999,warmup=100,checkpoints=1,'
           'dataset=cifar10',
}
SYNTHETIC = {'runlocal': 0, 'cpu': 0, 'gpu': 1}


def get_table(arg=None):
  a = parse_table_arg(arg, seeds=2, synthetic=-1)
  preset = f'preset={a.preset}'
  synthetic = SYNTHETIC[a.preset] if a.synthetic < 0 else a.synthetic
  rows = [Row('transfer', config='configs/broad/classifier.py',
              arg=f'{preset},seed={TRANSFER_SEED}', cost=3.0, show=False)]
  generator, evaluated = '', ('transfer',)
  if synthetic:
    rows.append(Row('generator', config='configs/ldm_scaling/cifar10_unet.py',
                    arg=GENERATOR[a.preset], cost=3.0, show=False))
    generator, evaluated = ',generator={generator}', ('transfer', 'generator')
  for seed in range(a.seeds):
    rows.append(Row(f'id_s{seed}', config='configs/broad/classifier.py',
                    arg=f'{preset},seed={seed}', cost=3.0, show=False))
    rows.append(Row(f'broad_s{seed}', config='configs/broad/evaluate.py',
                    arg=f'{preset},run={{id_s{seed}}},transfer={{transfer}}{generator}',
                    depends_on=(f'id_s{seed}', *evaluated), group='broad', cost=1.5))
  return Table(
      name=f'BROAD-mini ({a.preset} preset, {a.seeds} ID model{"s" * (a.seeds > 1)})',
      rows=rows,
      columns=[Column(h, f'broad/{k}') for h, k in HEADLINE],
      claim=('logit detectors are good on novel classes but inconsistent on other shifts; the '
             'GMM over detector scores has the best and most consistent average AUROC'),
      description=('AUROC in percent (OOD positive), overall = mean over shift types; the full '
                   'detector x split table is broad_table.md and broad_auroc.png.'),
      render=render)
