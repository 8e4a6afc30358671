"""PGD-10 adversarial-training throughput: jaxcv's `pgd_at` step vs PyTorch, in one process.

Every row trains the CIFAR ResNet-18 (11.17M parameters, 3x3 stem) at batch 512 with bf16
compute on 32x32 images on the device: PGD-10 (L-inf eps 8/255, step 2/255, random start) on
the eval-mode network (BatchNorm running statistics), then one train-mode forward/backward on the
adversarial batch and an SGD step. Throughput counts training images (each costs 11 forwards and
backwards).

  jaxcv          `jaxcv.train.build_train_step` for task 'pgd_at' (configs/cifar10/resnet18.py
                 settings + add_adversarial_config): on-device gather, crop+flip, attack in a
                 lax.fori_loop, optax SGD, donated state.
  torch_eager    PyTorch, bf16 autocast, channels_last, attack with torch.autograd.grad on the
                 input, model.eval() for the attack and model.train() for the update.
  torch_compile  the same with `torch.compile(model)`.

  python -m benchmarks.pgd_training            # writes $OUT/pgd_training.json (or $BENCH_OUT)
  SMOKE=1 python -m benchmarks.pgd_training    # a seconds-long CPU check
"""

from __future__ import annotations

import argparse
import os
import time

from benchmarks import common

EPS, STEP, PGD_STEPS = 8 / 255, 2 / 255, 10
MEAN, STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)


def settings():
  if common.smoke():
    return dict(batch=8, steps=2, warmup=1, image=8, examples=64, jax_model='resnet_tiny')
  return dict(batch=512, steps=20, warmup=3, image=32, examples=10_240, jax_model='resnet18')


def measure_jaxcv(s) -> dict:
  import jax
  from jaxcv import config as config_lib, parallel, train
  from jaxcv.data import build_train_loader, open_train_data
  from jaxcv.tasks.adversarial import add_adversarial_config

  config = config_lib.load('configs/cifar10/resnet18.py', [
      f'batch_size={s["batch"]}', 'total_steps=1000', f'model.name={s["jax_model"]}',
      f'data.name=synthetic:n={s["examples"]},size={s["image"]},classes=10'])
  config.unlock()
  config.task = 'pgd_at'
  add_adversarial_config(config, eps=EPS, step_size=STEP, steps=PGD_STEPS)
  config.lock()
  mesh = parallel.make_mesh(config.mesh, jax.devices()[:1])
  train_data, info = open_train_data(config)
  loader = build_train_loader(config, train_data, mesh)
  parts = train.build_parts(config, train_data, info, mesh, 1000)
  step = jax.jit(train.build_train_step(config, parts.task, loader, parts.tx, parts.schedule,
                                        parts.rng),
                 out_shardings=(parts.shardings, parallel.replicated(mesh)), donate_argnums=(0,))
  holder = {'state': parts.state, 'i': 0}

  def call():
    holder['state'], metrics = step(holder['state'], loader.inputs(holder['i']))
    holder['i'] += 1
    return metrics['loss']

  with jax.set_mesh(mesh):
    t0 = time.perf_counter()
    common.sync(call())
    compile_s = time.perf_counter() - t0
    timing = common.time_fn(call, steps=s['steps'], warmup=s['warmup'])
  return {'compile_seconds': compile_s, **timing}


def measure_torch(name: str, s) -> dict:
  import torch
  import torch.nn.functional as F
  from benchmarks.torch_models import resnet18_cifar

  device = 'cuda' if torch.cuda.is_available() else 'cpu'
  torch.backends.cudnn.benchmark = True
  batch, size = s['batch'], s['image']
  model = resnet18_cifar(10).to(device).to(memory_format=torch.channels_last)
  optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True,
                              weight_decay=5e-4)
  forward = torch.compile(model) if name == 'torch_compile' else model
  mean = torch.tensor(MEAN, device=device).view(1, 3, 1, 1)
  std = torch.tensor(STD, device=device).view(1, 3, 1, 1)
  images = torch.rand(batch, 3, size, size, device=device).to(memory_format=torch.channels_last)
  labels = torch.randint(0, 10, (batch,), device=device)
  autocast = lambda: torch.autocast(device_type=device, dtype=torch.bfloat16)

  def logits(x):
    return forward((x - mean) / std)

  def step():
    model.eval()
    x_adv = (images + torch.empty_like(images).uniform_(-EPS, EPS)).clamp(0, 1)
    for _ in range(PGD_STEPS):
      x_adv.requires_grad_(True)
      with autocast():
        loss = F.cross_entropy(logits(x_adv).float(), labels)
      grad, = torch.autograd.grad(loss, x_adv)
      x_adv = torch.min(torch.max(x_adv.detach() + STEP * grad.sign(), images - EPS),
                        images + EPS).clamp(0, 1)
    model.train()
    with autocast():
      loss = F.cross_entropy(logits(x_adv).float(), labels)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss

  t0 = time.perf_counter()
  step()
  common.sync()
  compile_s = time.perf_counter() - t0
  return {'compile_seconds': compile_s, **common.time_fn(step, steps=s['steps'],
                                                         warmup=s['warmup'])}


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--out', default=common.out_dir(os.environ.get('OUT', 'benchmarks/out')))
  parser.add_argument('--skip_compile', '--skip-compile', action='store_true', help='no torch.compile row')
  args = parser.parse_args()
  s = settings()
  rows = []
  variants = ['jaxcv'] + (['torch_eager'] + ([] if args.skip_compile or common.smoke()
                                             else ['torch_compile'])
                          if common.torch_available() else [])
  for name in variants:
    try:
      timing = measure_jaxcv(s) if name == 'jaxcv' else measure_torch(name, s)
      rows.append({'name': name, 'examples_per_sec': s['batch'] / timing['seconds_per_call'],
                   'ms_per_step': 1e3 * timing['seconds_per_call'],
                   'compile_s': timing['compile_seconds']})
    except Exception as e:  # noqa: BLE001 - one failed variant must not lose the others.
      rows.append({'name': name, 'error': f'{type(e).__name__}: {e}'[:300]})
    print(f'{name}: {rows[-1]}', flush=True)
    # Written after every row, so a timeout keeps what was measured.
    baseline = ('torch_compile' if any(r['name'] == 'torch_compile' and 'examples_per_sec' in r
                                       for r in rows) else 'torch_eager')
    common.add_ratios(rows, 'examples_per_sec', baseline)
    common.write_json(args.out, 'pgd_training', {
        'rows': rows, 'baseline': baseline, 'settings': {**s, 'eps': EPS, 'step_size': STEP,
                                                         'pgd_steps': PGD_STEPS,
                                                         'dtype': 'bfloat16'}})
  common.print_table(rows, title=f'PGD-{PGD_STEPS} adversarial training, ResNet-18, batch '
                     f'{s["batch"]}, bf16 ({common.device_name()}); ratio vs {baseline}')


if __name__ == '__main__':
  main()
