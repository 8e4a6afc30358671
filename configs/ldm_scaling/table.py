"""The LDM-scaling miniature (arXiv 2404.01367, docs/ldm_scaling.md): a class-conditional
CIFAR-10 width family trained with one recipe, then the sampling sweep over it.

  python -m jaxcv.sweep --table configs/ldm_scaling/table.py:cpu --workdir runs/ldm_scaling
  python -m jaxcv.sweep --table configs/ldm_scaling/table.py:gpu --workdir runs/ldm_scaling

Rows: `classifier` (a small CIFAR-10 classifier whose features define the proxy FID/KID space;
no Inception weights are needed), `w<W>` (configs/ldm_scaling/cifar10_unet.py at width W, one
recipe for every width), `costs` (FLOPs, normalised cost and training compute per width) and
`sampling` (best proxy FID over guidance per (width, sampler, steps) against sampling cost, and
FID against training compute: results.md and the two plots the claim rests on).
Presets:
  runlocal  widths 16 and 32, 4 steps, 64 samples (seconds; the tests)
  cpu       widths 8, 16 and 32 of a 16x16 variant (CIFAR-10 downscaled, no attention, one res
            block, levels [c, 2c, 2c]), 1,200 steps of batch 64, float32, 500 samples
  gpu       widths 32, 64 and 96, 250 steps of batch 256, bf16, 1,000 samples
Options: widths (';'-separated), steps, samples, dataset (replaces the preset's; ';' for a
comma inside it), denoiser (a registered denoiser in place of small_unet, e.g. for tests).
"""

from jaxcv.sweep import Column, Row, Table, parse_table_arg

UNET = 'configs/ldm_scaling/cifar10_unet.py'
PRESETS = {
    'runlocal': dict(widths='16;32', steps=4, unet='batch=32,lr=1e-3,ema=0.9,warmup=1,blocks=1,'
                     'checkpoints=2,dtype=float32,train_examples=512', dataset='cifar10_sample',
                     classifier='model=small_cnn,runlocal', samples=64,
                     samplers='ddim(steps=(2,)),dpm_solver_pp(steps=(2,))', guidance='1;2',
                     reference=500, curve='ddim,2,2.0', noise_seeds=1),
    # cpu: what 2 CPU cores train in about an hour: CIFAR-10 downscaled to 16x16, levels
    # [c, 2c, 2c] with one res block and no attention, GroupNorm(8) so that c = 8 is a member.
    'cpu': dict(widths='8;16;32', steps=1200, unet='batch=64,lr=1e-3,ema=0.995,warmup=50,'
                'blocks=1,mult=1-2-2,attention=,groups=8,checkpoints=3,dtype=float32',
                dataset='resized(height=16;width=16):cifar10',
                classifier='model=small_cnn,epochs=3,batch=256,dtype=float32', samples=500,
                samplers='ddim(steps=(2,4,8,16)),dpm_solver_pp(steps=(2,4,8))',
                guidance='1;2;3', reference=5000, curve='ddim,8,2.0', noise_seeds=3),
    'gpu': dict(widths='32;64;96', steps=250, unet='batch=256,lr=5e-4,ema=0.99,warmup=25,'
                'blocks=1,checkpoints=2', dataset='cifar10',
                classifier='model=small_cnn,epochs=2,batch=512',
                samples=1000, samplers='ddim(steps=(4,8,16)),dpm_solver_pp(steps=(4,8))',
                guidance='1;2;3', reference=10_000, curve='ddim,8,2.0', noise_seeds=3),
}


def get_table(arg=None):
  a = parse_table_arg(arg, widths='', steps=0, samples=0, dataset='', denoiser='')
  p = dict(PRESETS[a.preset])
  dataset = a.dataset or p['dataset']
  p['unet'] += f',dataset={dataset}'
  p['classifier'] += f',dataset={dataset}'
  unet_overrides = {'model.name': a.denoiser} if a.denoiser else {}
  widths = [int(w) for w in (a.widths or p['widths']).split(';') if w]
  steps = a.steps or p['steps']
  unet = f'steps={steps},{p["unet"]}'
  rows = [Row('classifier', config='configs/cifar10/resnet18.py', arg=p['classifier'],
              overrides={'evals.test.max_examples': 2000}, show=False)]
  for width in widths:
    rows.append(Row(f'w{width}', config=UNET, arg=f'{unet},width={width}',
                    overrides=unet_overrides, cost=width / max(widths)))
  members = tuple(f'w{w}' for w in widths)
  rows.append(Row('costs', fn='jaxcv.diffusion.scaling:width_costs', depends_on=members,
                  kwargs={'config': f'{UNET}:{unet}',
                          'runs': {str(w): '{w%d}' % w for w in widths},
                          'overrides': [f'{k}={v}' for k, v in unet_overrides.items()]},
                  cost=0.2,
                  show=False))
  rows.append(Row('sampling', fn='jaxcv.diffusion.scaling:sampling',
                  depends_on=('costs', 'classifier'), cost=2.0, show=False,
                  kwargs={'sweep': '{costs}', 'classifier': '{classifier}',
                          'samplers': p['samplers'], 'guidance': p['guidance'],
                          'num_samples': a.samples or p['samples'],
                          'reference_examples': p['reference'], 'curve': p['curve'],
                          'noise_seeds': p['noise_seeds']}))
  return Table(
      name=f'LDM scaling miniature ({a.preset} preset)', rows=rows, columns=[
          Column('parameters (M)', 'parameters', scale=1e-6),
          Column('final train loss', 'train/loss', digits=4)],
      claim='at a small sampling cost a smaller model reaches better quality than a bigger one',
      description=(f'Widths {widths} of `{UNET}:{unet}`; proxy FID in the feature space of '
                   f'`configs/cifar10/resnet18.py:{p["classifier"]}`. The claim is read from '
                   'sampling/results.md and sampling/fid_vs_sampling_cost.png.'))
