"""ResNet-18 (CIFAR) training throughput: PyTorch eager / torch.compile vs Flax vs jaxcv.

Every row times the same network (11.17M parameters, 3x3 stem), bf16 compute, batch 512 (unless
the name says otherwise), SGD-Nesterov with weight decay, on data already on the device:

  torch_eager / torch_compile  PyTorch, bf16 autocast, channels_last, `torch.compile(model)`;
                               each step gathers a random batch from a uint8 tensor on the GPU,
                               normalises and flips it (no crop).
  flax_plain                   the jaxcv ResNet-18 module in a minimal jitted step: one fixed
                               float batch, optax SGD, donated state, nothing else.
  jaxcv                        `jaxcv.train.build_train_step` as `train.run` builds it from
                               configs/cifar10/resnet18.py: on-device gather of a shuffled batch,
                               crop+flip augmentation, label smoothing, onecycle schedule, metrics.
  jaxcv_noaug                  the same without augmentation (what augmentation costs).
  jaxcv_scan8                  the same with steps_per_call=8 (8 steps per dispatch via lax.scan).
  jaxcv_b1024                  batch 1024.
  jaxcv_xla_*                  the jaxcv step under extra XLA_FLAGS (separate processes).

Each variant runs in its own process, one at a time by default (`--parallel`, see
`benchmarks/common.py`). Throughput = images per second over `--steps` steps after
`--warmup` calls. MFU uses 3.3 GFLOP per training image (forward + backward) and the peak bf16
matmul rate measured in the flax_plain process (`peak_tflops`).

  python -m benchmarks.resnet18_throughput --out $OUT/perf
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from benchmarks import common

FLOP_PER_IMAGE = 3.3e9  # Forward+backward of CIFAR ResNet-18 (0.56 GMAC forward x 2 x 3).
BASELINE = 'torch_compile'
# Best of 3 timed windows: other variants' compilation (XLA and cuDNN autotuning) runs GPU
# kernels in bursts, so the least disturbed window is the measurement.
REPEATS = 3

XLA_VARIANTS = {
    # CUDA graphs for convolutions too, not only fusions: fewer kernel launches per step.
    'jaxcv_xla_cmdbuf': '--xla_gpu_enable_command_buffer=FUSION,CUBLAS,CUBLASLT,CUSTOM_CALL,CUDNN',
    'jaxcv_xla_lhs': '--xla_gpu_enable_latency_hiding_scheduler=true',
}


def _sizes():
  if common.smoke():
    return dict(num_examples=256, image=8)
  return dict(num_examples=50_000, image=32)


# ------------------------------------------------------------------------------------ PyTorch
def measure_torch(name: str, batch: int, steps: int, warmup: int) -> dict:
  import torch
  import torch.nn.functional as F
  from benchmarks.torch_models import resnet18_cifar

  device = 'cuda' if torch.cuda.is_available() else 'cpu'
  torch.backends.cudnn.benchmark = True
  torch.backends.cuda.matmul.allow_tf32 = True
  torch.backends.cudnn.allow_tf32 = True
  sizes = _sizes()
  n = sizes['num_examples']
  model = resnet18_cifar(10).to(device).to(memory_format=torch.channels_last)
  optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True,
                              weight_decay=5e-4)
  forward = torch.compile(model) if name == 'torch_compile' else model
  images = torch.randint(0, 256, (n, 3, sizes['image'], sizes['image']), dtype=torch.uint8,
                         device=device)
  labels = torch.randint(0, 10, (n,), device=device)
  mean = torch.tensor((0.4914, 0.4822, 0.4465), device=device).view(1, 3, 1, 1) * 255
  std = torch.tensor((0.2470, 0.2435, 0.2616), device=device).view(1, 3, 1, 1) * 255

  def step():
    idx = torch.randint(0, n, (batch,), device=device)
    x = (images[idx].float() - mean) / std
    flip = torch.rand(batch, 1, 1, 1, device=device) < 0.5
    x = torch.where(flip, x.flip(3), x).contiguous(memory_format=torch.channels_last)
    with torch.autocast(device, dtype=torch.bfloat16):
      loss = F.cross_entropy(forward(x), labels[idx], label_smoothing=0.1)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss

  t0 = time.perf_counter()
  step()  # Compilation (torch.compile) happens here.
  compile_s = time.perf_counter() - t0
  with common.gpu_lock() as lock:
    timing = common.time_fn(step, steps=steps, warmup=warmup, repeats=REPEATS)
  return {'name': name, 'batch': batch, 'compile_s': compile_s, 'lock_wait_s': lock.waited,
          **timing}


# ------------------------------------------------------------------------------------ JAX
def _jax_setup():
  import jax
  cache = os.environ.get('JAX_CACHE_DIR')
  if cache:
    jax.config.update('jax_compilation_cache_dir', cache)
  return jax


def measure_peak_tflops() -> float:
  """Best bf16 matmul rate (TFLOP/s) on the first device: the MFU denominator."""
  jax = _jax_setup()
  import jax.numpy as jnp
  n = 512 if common.smoke() else 8192
  a = jnp.ones((n, n), jnp.bfloat16)
  matmul = jax.jit(lambda a: a @ a)
  with common.gpu_lock():
    t = common.time_fn(lambda: matmul(a), steps=3 if common.smoke() else 50, warmup=2,
                       repeats=3)
  return 2 * n**3 / t['seconds_per_call'] / 1e12


def measure_flax_plain(name: str, batch: int, steps: int, warmup: int) -> dict:
  jax = _jax_setup()
  import jax.numpy as jnp
  import optax
  from jaxcv.models import build_model
  from jaxcv.losses import cross_entropy

  size = _sizes()['image']
  model = build_model('resnet18', 10, dtype='bfloat16', input_mean=(0.4914, 0.4822, 0.4465),
                      input_std=(0.2470, 0.2435, 0.2616))
  variables = model.init(jax.random.key(0), jnp.zeros((1, size, size, 3)), train=False)
  tx = optax.chain(optax.add_decayed_weights(5e-4), optax.sgd(0.1, 0.9, nesterov=True))
  state = (variables['params'], variables['batch_stats'], tx.init(variables['params']))
  x = jax.random.uniform(jax.random.key(1), (batch, size, size, 3))
  y = jax.random.randint(jax.random.key(2), (batch,), 0, 10)

  def step(state, x, y):
    params, batch_stats, opt_state = state

    def loss_fn(params):
      logits, new = model.apply({'params': params, 'batch_stats': batch_stats}, x, train=True,
                                mutable=['batch_stats'])
      return jnp.mean(cross_entropy(logits, y, 0.1)), new['batch_stats']

    (loss, batch_stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return (optax.apply_updates(params, updates), batch_stats, opt_state), loss

  step = jax.jit(step, donate_argnums=0)
  t0 = time.perf_counter()
  state, loss = step(state, x, y)
  jax.block_until_ready(loss)
  compile_s = time.perf_counter() - t0

  def call():
    nonlocal state
    state, loss = step(state, x, y)
    return loss

  with common.gpu_lock() as lock:
    timing = common.time_fn(call, steps=steps, warmup=warmup, repeats=REPEATS)
  return {'name': name, 'batch': batch, 'compile_s': compile_s, 'lock_wait_s': lock.waited,
          **timing}


def jaxcv_step(batch: int, steps_per_call: int = 1, augment: str | None = None,
               config_spec: str = 'configs/cifar10/resnet18.py'):
  """(jitted step, state, inputs) exactly as `train.run` builds them, on random uint8 data."""
  jax = _jax_setup()
  import numpy as np
  from jaxcv import config as config_lib
  from jaxcv import parallel, train
  from jaxcv.data.dataset import ArrayDataset, DataInfo
  from jaxcv.data.device_loader import DeviceLoader

  sizes = _sizes()
  n, size = sizes['num_examples'], sizes['image']
  config = config_lib.load(config_spec, [f'batch_size={batch}', 'total_steps=100000'])
  with config.unlocked():
    config.steps_per_call = steps_per_call
    if augment is not None:
      config.data.augment = augment
  rng = np.random.default_rng(0)
  data = ArrayDataset(images=rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8),
                      labels=rng.integers(0, 10, n).astype(np.int32),
                      class_names=[str(i) for i in range(10)])
  info = DataInfo(num_classes=10, image_shape=(size, size, 3), num_train_examples=n,
                  class_names=tuple(data.class_names))
  mesh = parallel.make_mesh(config.mesh, jax.devices()[:1])
  loader = DeviceLoader(data, batch, config.seed, mesh)
  parts = train.build_parts(config, data, info, mesh, config.total_steps)
  step = train.build_train_step(config, parts.task, loader, parts.tx, parts.schedule, parts.rng)
  if steps_per_call > 1:
    step = train.scan_steps(step, steps_per_call)
  step = jax.jit(step, out_shardings=(parts.shardings, parallel.replicated(mesh)),
                 donate_argnums=(0,))
  return step, parts.state, loader.inputs(0), mesh


def measure_jaxcv(name: str, batch: int, steps: int, warmup: int, steps_per_call: int = 1,
                  augment: str | None = None, profile_dir: str | None = None) -> dict:
  jax = _jax_setup()
  step, state, inputs, mesh = jaxcv_step(batch, steps_per_call, augment)
  t0 = time.perf_counter()
  with jax.set_mesh(mesh):
    state, metrics = step(state, inputs)
    jax.block_until_ready(metrics)
    compile_s = time.perf_counter() - t0

    def call():
      nonlocal state
      state, metrics = step(state, inputs)
      return metrics['loss']

    calls = max(1, steps // steps_per_call)
    with common.gpu_lock() as lock:
      timing = common.time_fn(call, steps=calls, warmup=warmup, repeats=REPEATS)
      if profile_dir:
        jax.profiler.start_trace(profile_dir, create_perfetto_trace=True)
        for _ in range(max(2, 10 // steps_per_call)):
          loss = call()
        jax.block_until_ready(loss)
        jax.profiler.stop_trace()
  timing['seconds_per_call'] /= steps_per_call
  timing['median_seconds_per_call'] /= steps_per_call
  return {'name': name, 'batch': batch, 'steps_per_call': steps_per_call,
          'compile_s': compile_s, 'lock_wait_s': lock.waited, **timing}


# ------------------------------------------------------------------------------------ driver
def worker(name: str, args) -> list[dict]:
  batch = 1024 if name.endswith('_b1024') else args.batch
  if common.smoke():
    batch = 8 if batch == 512 else 16
  steps, warmup = args.steps, args.warmup
  if name.startswith('torch'):
    return [measure_torch(name, batch, steps, warmup)]
  if name == 'flax_plain':
    rows = [measure_flax_plain(name, batch, steps, warmup)]
    rows[0]['peak_tflops'] = measure_peak_tflops()
    return rows
  if name == 'jaxcv':
    profile = os.path.join(args.out, 'trace') if args.profile else None
    return [measure_jaxcv('jaxcv', batch, steps, warmup, profile_dir=profile)]
  if name == 'jaxcv_noaug':  # What the on-device augmentation costs.
    return [measure_jaxcv(name, batch, steps, warmup, augment='')]
  if name == 'jaxcv_scan8':  # 48 timed steps = 6 calls of 8.
    return [measure_jaxcv(name, batch, steps, warmup, steps_per_call=8)]
  if name.startswith('jaxcv'):  # jaxcv_b1024 and the XLA-flag variants.
    return [measure_jaxcv(name, batch, steps, warmup)]
  raise SystemExit(f'unknown variant {name}')


def finish_rows(rows: list[dict]) -> list[dict]:
  peak = next((r['peak_tflops'] for r in rows if r.get('peak_tflops')), None)
  for r in rows:
    if 'seconds_per_call' in r:
      r['img_per_s'] = r['batch'] / r['seconds_per_call']
      r['ms_per_step'] = 1e3 * r['seconds_per_call']
      # FLOPs scale with the image area (smoke runs use 8x8 images).
      flop = FLOP_PER_IMAGE * (_sizes()['image'] / 32)**2
      r['achieved_tflops'] = r['img_per_s'] * flop / 1e12
      if peak:
        r['mfu'] = r['achieved_tflops'] / peak
  common.add_ratios(rows, 'img_per_s', BASELINE)
  if not any(r.get('ratio') for r in rows):  # No torch_compile row (no torch): vs flax_plain.
    common.add_ratios(rows, 'img_per_s', 'flax_plain')
  return rows


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--out', default=common.out_dir())
  parser.add_argument('--batch', type=int, default=512)
  parser.add_argument('--steps', type=int, default=48, help='timed steps per window (x3)')
  parser.add_argument('--warmup', type=int, default=3)
  parser.add_argument('--parallel', type=int, default=1)
  parser.add_argument('--timeout', type=float, default=150)
  # In start order: the slowest compile first, then the headline rows, then the variants.
  parser.add_argument('--variants', default='torch_compile,jaxcv,flax_plain,torch_eager,'
                      'jaxcv_scan8,jaxcv_b1024,jaxcv_noaug,' + ','.join(XLA_VARIANTS))
  parser.add_argument('--profile', action='store_true', help='trace the jaxcv step')
  parser.add_argument('--worker', help=argparse.SUPPRESS)
  parser.add_argument('--result', help=argparse.SUPPRESS)
  args = parser.parse_args(argv)
  if common.smoke():
    args.steps, args.warmup = 2, 1

  if args.worker:
    common.worker_result(args.result, worker(args.worker, args))
    return

  names = [v for v in args.variants.split(',') if v]
  if not common.torch_available():
    print('torch is not installed: skipping the PyTorch rows', flush=True)
    names = [n for n in names if not n.startswith('torch')]
  jobs = [{'name': n, 'env': {'XLA_FLAGS': (os.environ.get('XLA_FLAGS', '') + ' ' +
                                            XLA_VARIANTS[n]).strip()} if n in XLA_VARIANTS else {}}
          for n in names]
  extra = ['--out', args.out, '--batch', str(args.batch), '--steps', str(args.steps),
           '--warmup', str(args.warmup)] + (['--profile'] if args.profile else [])
  rows = common.run_workers('benchmarks.resnet18_throughput', jobs, parallel=args.parallel,
                            timeout=args.timeout, extra_args=extra)
  rows = finish_rows(rows)
  order = {n: i for i, n in enumerate(['torch_eager', 'torch_compile', 'flax_plain', 'jaxcv'])}
  rows.sort(key=lambda r: (order.get(r['name'], 99), r['name']))
  common.print_table(rows, ['ratio', 'name', 'img_per_s', 'ms_per_step', 'mfu', 'batch',
                            'achieved_tflops', 'peak_tflops', 'compile_s', 'error'],
                     title=f'ResNet-18 CIFAR training throughput (ratio vs {BASELINE})')
  common.write_json(args.out, 'resnet18_throughput', {
      'baseline': BASELINE, 'flop_per_image': FLOP_PER_IMAGE, 'steps': args.steps,
      'rows': rows})


if __name__ == '__main__':
  sys.exit(main())
