"""SD-1.5 UNet training throughput and MFU: jaxcv's UNet vs diffusers' UNet2DConditionModel.

Both sides train the same network (SD 1.5's UNet at base width c; c=320 is SD 1.5 itself,
859.5M parameters) on the same synthetic task, data already on the device:

  batch of 64x64x4 latents and 77x768 text contexts (fixed, random), a fresh noise draw and
  timestep per example each step (SD's scaled-linear schedule, 1000 steps), eps-prediction MSE,
  AdamW (lr 1e-4, weight decay 0.01), bf16 compute with fp32 parameters.

  diffusers_c<c>_b<B>  PyTorch eager, `UNet2DConditionModel` with SD 1.5's config, bf16 autocast,
                       channels_last, fused AdamW, SDPA attention (diffusers' default).
  jaxcv_c<c>_b<B>      `jaxcv.models.unet.sd_unet(c, dtype=bfloat16)`, one jitted step with donated
                       state (cuDNN flash attention where supported).
  jaxcv_c768_b<B>_remat  the 5B member, rematerialised blocks: one compile and a couple of steps,
                       to show it trains on one GPU and what memory it takes.

MFU = 3 x F x samples/s / peak, where F is the forward FLOPs of one example as XLA counts them
for jaxcv's UNet (`jaxcv.diffusion.cost.unet_cost`, fp32 lowering so attention is counted too; a
multiply-add is 2 FLOPs; 789.4 GFLOPs at c=320, the paper's Table 1 number) and 3 x F
approximates forward + backward. Both frameworks' rows use the same F (same network), and the
peak is 790 TFLOP/s dense bf16 (`--peak_tflops`; the project's H100/H200 figure).

Each row runs in its own process (`common.run_workers`), one at a time by default (`--parallel`;
see `benchmarks/common.py`; diffusers at c=320 alone takes ~56 GB). Groups: the c=320 pair (with jaxcv c=128
compiling beside it), then diffusers c=128, then the 5B row, each only when enough of `--budget`
seconds is left, and bounded by what is left. Results (table + JSON) are written after each
group, so a later overrun loses nothing measured.

  python -m benchmarks.unet_training --out $OUT/ldm_throughput --budget 85
  JAX_CACHE_DIR=runs/jax_cache python -m benchmarks.unet_training ...  # rerun: no recompiling
  SMOKE=1 python -m benchmarks.unet_training --out /tmp/unet_smoke      # seconds, on a CPU
"""

from __future__ import annotations

import argparse
import glob
import os
import subprocess
import sys
import time
import zipfile

from benchmarks import common

PEAK_TFLOPS = 790.0
NUM_TIMESTEPS = 1000
WHEELS_ENV = 'JAXCV_DEVICE_WHEELS'


def _shapes():
  """(latent H=W, context length, steps, warmup) for real runs and for SMOKE=1."""
  if common.smoke():
    return dict(latent=8, context_len=4, steps=2, warmup=1)
  return dict(latent=64, context_len=77, steps=20, warmup=3)


def _phases(concurrent: bool) -> list[list[tuple[str, int, int, bool]]]:
  """Groups of (framework, width, batch, remat); a group's processes run concurrently.

  With room for several processes, the c=320 pair compiles next to jaxcv c=128 (diffusers at
  c=320 needs ~56 GB, so diffusers c=128 waits for its own group); otherwise one at a time.
  The 5B step always runs alone and last.
  """
  if common.smoke():
    headline, small, big = [('torch', 32, 2, False), ('jax', 32, 2, False)], [], [
        ('jax', 32, 1, True)]
  else:
    headline = [('torch', 320, 32, False), ('jax', 320, 32, False)]
    small = [('jax', 128, 64, False), ('torch', 128, 64, False)]
    big = [('jax', 768, 8, True)]
  if concurrent:
    groups = [headline + small[:1], small[1:]]
  else:
    groups = [[case] for case in headline + small]
  return [g for g in groups if g] + [big]


# ------------------------------------------------------------------------------------- PyTorch
def _import_diffusers():
  """diffusers' UNet2DConditionModel, from the environment or from staged wheels.

  Wheels in `.device_extra/wheels` ($JAXCV_DEVICE_WHEELS) are unzipped into a temporary folder
  that is appended to sys.path, so packages already installed keep precedence.
  """
  try:
    from diffusers import UNet2DConditionModel  # pylint: disable=import-outside-toplevel
    return UNet2DConditionModel
  except ImportError:
    pass
  wheel_dir = os.environ.get(WHEELS_ENV, os.path.join(os.getcwd(), '.device_extra', 'wheels'))
  wheels = sorted(glob.glob(os.path.join(wheel_dir, '*.whl')))
  if not wheels:
    raise ImportError(f'diffusers is not installed and no wheels are staged in {wheel_dir}')
  target = '/tmp/jaxcv_device_extra_site'
  for wheel in wheels:
    with zipfile.ZipFile(wheel) as z:
      z.extractall(target)
  sys.path.append(target)
  from diffusers import UNet2DConditionModel  # pylint: disable=import-outside-toplevel
  return UNet2DConditionModel


def _torch_alphas_cumprod(torch, device):
  betas = torch.linspace(0.00085**0.5, 0.012**0.5, NUM_TIMESTEPS, dtype=torch.float64)**2
  return torch.cumprod(1 - betas, 0).float().to(device)


def measure_torch(width: int, batch: int, shapes: dict) -> dict:
  import torch  # pylint: disable=import-outside-toplevel
  import torch.nn.functional as F  # pylint: disable=import-outside-toplevel

  start = time.perf_counter()
  UNet2DConditionModel = _import_diffusers()  # pylint: disable=invalid-name
  import diffusers  # pylint: disable=import-outside-toplevel
  device = 'cuda' if torch.cuda.is_available() else 'cpu'
  torch.backends.cudnn.benchmark = True
  torch.backends.cuda.matmul.allow_tf32 = True
  torch.backends.cudnn.allow_tf32 = True
  with torch.device(device):  # Parameters are created on the GPU (seconds, not a minute).
    model = UNet2DConditionModel(
        sample_size=shapes['latent'], in_channels=4, out_channels=4, layers_per_block=2,
        block_out_channels=(width, 2 * width, 4 * width, 4 * width),
        down_block_types=('CrossAttnDownBlock2D',) * 3 + ('DownBlock2D',),
        up_block_types=('UpBlock2D',) + ('CrossAttnUpBlock2D',) * 3,
        cross_attention_dim=768, attention_head_dim=8, norm_num_groups=32)
  model = model.to(memory_format=torch.channels_last).train()
  params = sum(p.numel() for p in model.parameters())
  optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.01,
                                fused=device == 'cuda')
  gen = torch.Generator(device).manual_seed(0)
  size = shapes['latent']
  latents = torch.randn(batch, 4, size, size, device=device, generator=gen).to(
      memory_format=torch.channels_last)
  context = torch.randn(batch, shapes['context_len'], 768, device=device, generator=gen)
  alphas_cumprod = _torch_alphas_cumprod(torch, device)

  def step():
    noise = torch.randn_like(latents)
    t = torch.randint(0, NUM_TIMESTEPS, (batch,), device=device)
    a = alphas_cumprod[t].view(batch, 1, 1, 1)
    noisy = a.sqrt() * latents + (1 - a).sqrt() * noise
    # bf16 autocast on the GPU; a CPU (SMOKE=1) has no fast bf16 convolutions.
    with torch.autocast(device, dtype=torch.bfloat16, enabled=device == 'cuda'):
      pred = model(noisy, t, encoder_hidden_states=context).sample
    loss = F.mse_loss(pred.float(), noise)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss

  build_s = time.perf_counter() - start
  if device == 'cuda':
    torch.cuda.reset_peak_memory_stats()
  sync = lambda _: torch.cuda.synchronize() if device == 'cuda' else None
  with common.gpu_lock() as lock:
    timing = common.time_fn(step, steps=shapes['steps'], warmup=shapes['warmup'], sync_fn=sync)
  row = dict(framework='pytorch', implementation=f'diffusers {diffusers.__version__} '
             'UNet2DConditionModel', params=params, build_s=build_s, lock_wait_s=lock.waited,
             **timing)
  if device == 'cuda':
    row['peak_mem_gb'] = torch.cuda.max_memory_allocated() / 1e9
    row['reserved_mem_gb'] = torch.cuda.max_memory_reserved() / 1e9
  return row


# ------------------------------------------------------------------------------------- JAX
def measure_jax(width: int, batch: int, shapes: dict, remat: bool) -> dict:
  import jax  # pylint: disable=import-outside-toplevel
  import jax.numpy as jnp  # pylint: disable=import-outside-toplevel
  import numpy as np  # pylint: disable=import-outside-toplevel
  import optax  # pylint: disable=import-outside-toplevel
  from jaxcv.diffusion import cost as cost_lib  # pylint: disable=import-outside-toplevel
  from jaxcv.diffusion import schedules  # pylint: disable=import-outside-toplevel
  from jaxcv.models import unet as unet_lib  # pylint: disable=import-outside-toplevel

  cache = os.environ.get('JAX_CACHE_DIR')
  if cache:  # A persistent compilation cache: a rerun skips XLA compilation (and autotuning).
    jax.config.update('jax_compilation_cache_dir', cache)
  size, context_len = shapes['latent'], shapes['context_len']
  tag = f'jaxcv c{width} b{batch}'
  start = time.perf_counter()
  # FLOPs of the fp32 forward: XLA attention there, so attention is counted (a cuDNN custom
  # call is not). Lowered on the host, so nothing is compiled for it.
  forward = cost_lib.unet_cost(unet_lib.sd_unet(width), (size, size, 4), context_len)
  cost_s = time.perf_counter() - start
  print(f'[{tag}] forward cost {forward.flops / 1e9:.1f} GFLOPs in {cost_s:.1f}s', flush=True)

  model = unet_lib.sd_unet(width, dtype=jnp.bfloat16, remat=remat)
  tx = optax.adamw(1e-4, weight_decay=0.01)
  alphas_cumprod = jnp.asarray(np.cumprod(1 - schedules.scaled_linear_betas(NUM_TIMESTEPS)),
                               jnp.float32)
  data_rng, init_rng = jax.random.split(jax.random.key(0))
  latents = jax.random.normal(data_rng, (batch, size, size, 4))
  context = jax.random.normal(jax.random.fold_in(data_rng, 1), (batch, context_len, 768))

  def init(rng):
    params = model.init(rng, latents[:1], jnp.zeros((1,)), context[:1])['params']
    return params, tx.init(params)

  def train_step(state, rng):
    params, opt_state = state
    noise_rng, t_rng = jax.random.split(rng)
    noise = jax.random.normal(noise_rng, latents.shape)
    t = jax.random.randint(t_rng, (batch,), 0, NUM_TIMESTEPS)
    a = alphas_cumprod[t][:, None, None, None]
    noisy = jnp.sqrt(a) * latents + jnp.sqrt(1 - a) * noise

    def loss_fn(p):
      pred = model.apply({'params': p}, noisy, t, context)
      return jnp.mean((pred - noise)**2)

    loss, grads = jax.value_and_grad(loss_fn)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return (optax.apply_updates(params, updates), opt_state), loss

  start = time.perf_counter()
  state = jax.block_until_ready(jax.jit(init)(init_rng))
  init_s = time.perf_counter() - start
  print(f'[{tag}] parameters initialised (compile + run) in {init_s:.1f}s', flush=True)
  step_rng = jax.random.key(1)
  start = time.perf_counter()
  lowered = jax.jit(train_step, donate_argnums=(0,)).lower(state, step_rng)
  lower_s = time.perf_counter() - start
  print(f'[{tag}] train step traced and lowered in {lower_s:.1f}s', flush=True)
  compiled = lowered.compile()
  compile_s = time.perf_counter() - start - lower_s
  print(f'[{tag}] train step compiled in {compile_s:.1f}s', flush=True)
  step_flops = None
  try:
    analysis = compiled.cost_analysis()
    analysis = analysis[0] if isinstance(analysis, (list, tuple)) else analysis
    step_flops = float(analysis['flops']) / batch
  except Exception:  # pylint: disable=broad-except
    pass

  holder = {'state': state}
  del state

  def step():
    holder['state'], loss = compiled(holder['state'], step_rng)
    return loss

  with common.gpu_lock() as lock:
    timing = common.time_fn(step, steps=shapes['steps'], warmup=shapes['warmup'],
                            sync_fn=jax.block_until_ready)
  row = dict(framework='jax', implementation='jaxcv sd_unet', params=forward.params,
             fwd_gflops=forward.flops / 1e9, xla_step_gflops=(step_flops or 0) / 1e9 or None,
             compile_s=compile_s, lower_s=lower_s, init_s=init_s, cost_s=cost_s,
             lock_wait_s=lock.waited, **timing)
  stats = jax.devices()[0].memory_stats() or {}
  if 'peak_bytes_in_use' in stats:
    row['peak_mem_gb'] = stats['peak_bytes_in_use'] / 1e9
  return row


# ------------------------------------------------------------------------------------- driver
def _name(framework: str, width: int, batch: int, remat: bool) -> str:
  return f'{"diffusers" if framework == "torch" else "jaxcv"}_c{width}_b{batch}' + (
      '_remat' if remat else '')


def worker(name: str) -> list[dict]:
  framework, width, batch, remat = name.split(':')
  width, batch, remat = int(width), int(batch), remat == '1'
  shapes = _shapes()
  row = (measure_torch(width, batch, shapes) if framework == 'torch'
         else measure_jax(width, batch, shapes, remat))
  row.update(name=_name(framework, width, batch, remat), width=width, batch=batch,
             remat=remat, latent=shapes['latent'], context_len=shapes['context_len'])
  row['samples_per_s'] = batch / row['seconds_per_call']
  return [row]


def gpu_memory_gb() -> float | None:
  try:
    out = subprocess.run(['nvidia-smi', '--query-gpu=memory.total', '--format=csv,noheader,nounits'],
                         capture_output=True, text=True, timeout=20, check=True).stdout
    return float(out.split()[0]) / 1024
  except Exception:  # pylint: disable=broad-except
    return None


def finish_rows(rows: list[dict], peak_tflops: float) -> list[dict]:
  """Adds MFU (same forward FLOPs for both frameworks at a width) and the jaxcv/diffusers ratio."""
  flops = {r['width']: r['fwd_gflops'] for r in rows if r.get('fwd_gflops')}
  torch_rate = {(r['width'], r['batch']): r['samples_per_s'] for r in rows
                if r.get('framework') == 'pytorch' and r.get('samples_per_s')}
  for r in rows:
    if r.get('samples_per_s') and r.get('width') in flops:
      r['fwd_gflops'] = flops[r['width']]
      r['mfu'] = 3 * flops[r['width']] * 1e9 * r['samples_per_s'] / (peak_tflops * 1e12)
    base = torch_rate.get((r.get('width'), r.get('batch')))
    r['ratio'] = r['samples_per_s'] / base if base and r.get('samples_per_s') else None
    if 'params' in r:
      r['params_m'] = r['params'] / 1e6
    if 'seconds_per_call' in r:
      r['step_ms'] = 1e3 * r['seconds_per_call']
  return rows


COLUMNS = ['ratio', 'name', 'samples_per_s', 'step_ms', 'mfu', 'params_m', 'fwd_gflops',
           'peak_mem_gb', 'lower_s', 'compile_s', 'init_s', 'build_s', 'lock_wait_s', 'error']


def report(rows: list[dict], args, started: float) -> None:
  rows = finish_rows(rows, args.peak_tflops)
  title = (f'SD-1.5 UNet training, {"SMOKE " if common.smoke() else ""}{common.device_name()}: '
           'samples/s (ratio = jaxcv / diffusers at the same width and batch)')
  table = common.print_table(rows, COLUMNS, title=title)
  common.write_json(args.out, 'unet_training', {
      'rows': rows, 'table': table, 'peak_tflops': args.peak_tflops,
      'mfu_convention': '3 x XLA forward FLOPs (fp32 lowering of jaxcv sd_unet, batch 1, '
                        'multiply-add = 2 FLOPs) x samples/s / peak; same FLOPs for both '
                        'frameworks', 'wall_s': time.perf_counter() - started})


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--out', default=common.out_dir())
  parser.add_argument('--budget', type=float, default=900.0 if common.smoke() else 85.0,
                      help='wall seconds for everything; later phases are skipped when short')
  parser.add_argument('--peak_tflops', type=float, default=PEAK_TFLOPS)
  parser.add_argument('--min_5b_s', type=float, default=100.0,
                      help='start the 5B phase only with this many seconds left')
  parser.add_argument('--parallel', type=int, default=1,
                      help='>1: compile concurrently (disturbs timings; needs >=120 GB)')
  parser.add_argument('--frameworks', default='torch,jax')
  parser.add_argument('--worker', default=None, help=argparse.SUPPRESS)
  parser.add_argument('--result', default=None, help=argparse.SUPPRESS)
  args = parser.parse_args(argv)
  if args.worker:
    common.worker_result(args.result, worker(args.worker))
    return

  started = time.perf_counter()
  memory = gpu_memory_gb()
  concurrent = (args.parallel or 1) > 1
  print(f'GPU memory: {memory} GB; concurrent processes: {concurrent}; budget '
        f'{args.budget:.0f} s', flush=True)
  frameworks = args.frameworks.split(',')
  rows: list[dict] = []
  for group in _phases(concurrent):
    group = [case for case in group if case[0] in frameworks]
    if not group:
      continue
    left = args.budget - (time.perf_counter() - started)
    big = any(remat for *_, remat in group)
    needed = 0 if common.smoke() else (args.min_5b_s if big else 15)
    if left < needed:
      print(f'skipping {group}: {left:.0f} s left, {needed:.0f} s needed', flush=True)
      rows += [{'name': _name(*case), 'error': f'skipped: {left:.0f} s left'} for case in group]
      continue
    jobs = []
    for framework, width, batch, remat in group:
      # JAX must not grab 75% of the GPU while PyTorch shares it; the 5B step takes it all.
      env = ({'XLA_PYTHON_CLIENT_MEM_FRACTION': '0.95'} if remat else
             {'XLA_PYTHON_CLIENT_PREALLOCATE': 'false'} if framework == 'jax' else {})
      jobs.append({'name': f'{framework}:{width}:{batch}:{int(remat)}', 'env': env})
    # Every process of a group starts now, so `left` bounds them all.
    rows += common.run_workers('benchmarks.unet_training', jobs, parallel=len(jobs),
                               timeout=left)
    report(rows, args, started)


if __name__ == '__main__':
  main()
