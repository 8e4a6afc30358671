"""Evaluation throughput: ResNet-18 (CIFAR) over a 10k-image test split, PyTorch vs jaxcv.

  torch_eager / torch_compile  bf16 autocast, channels_last, `torch.inference_mode`, the split as
                               uint8 on the GPU, normalised per batch of 1000; top-1 count.
  jaxcv                        `jaxcv.evaluators` 'classification' exactly as the loop builds it
                               (batch 1000: top-1, top-5, loss, masked padding).
  jaxcv_b2000                  batch 2000.
  jaxcv_tta_flip_translate     with airbench's flip + translate TTA (6 forward passes per image:
                               the image, two 1-px shifts, and their mirrors): img/s counts test
                               images, so it is ~6x lower by construction.

Images per second = test images / seconds per full pass (best of `--passes` passes, warm).

  python -m benchmarks.eval_throughput --out $OUT/perf
"""

from __future__ import annotations

import argparse
import sys
import time

from benchmarks import common

BASELINE = 'torch_compile'
MEAN = (0.4914, 0.4822, 0.4465)
STD = (0.2470, 0.2435, 0.2616)


def _num_examples() -> int:
  return 64 if common.smoke() else 10_000


def _image_size() -> int:
  return 8 if common.smoke() else 32


def measure_torch(name: str, passes: int) -> dict:
  import torch
  from benchmarks.torch_models import resnet18_cifar
  device = 'cuda' if torch.cuda.is_available() else 'cpu'
  torch.backends.cudnn.benchmark = True
  n, size, batch = _num_examples(), _image_size(), 1000 if not common.smoke() else 32
  model = resnet18_cifar(10).to(device).to(memory_format=torch.channels_last).eval()
  forward = torch.compile(model) if name == 'torch_compile' else model
  images = torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, device=device)
  labels = torch.randint(0, 10, (n,), device=device)
  mean = torch.tensor(MEAN, device=device).view(1, 3, 1, 1) * 255
  std = torch.tensor(STD, device=device).view(1, 3, 1, 1) * 255

  @torch.inference_mode()
  def full_pass():
    correct = torch.zeros((), device=device)
    for start in range(0, n, batch):
      x = ((images[start:start + batch].float() - mean) / std).contiguous(
          memory_format=torch.channels_last)
      with torch.autocast(device, dtype=torch.bfloat16):
        logits = forward(x)
      correct += (logits.argmax(1) == labels[start:start + batch]).sum()
    return correct

  t0 = time.perf_counter()
  full_pass()
  compile_s = time.perf_counter() - t0
  with common.gpu_lock():
    timing = common.time_fn(full_pass, steps=passes, warmup=1)
  return {'name': name, 'compile_s': compile_s, 'num_examples': n, **timing}


def measure_jaxcv(name: str, passes: int, batch: int = 1000, tta: str = 'none') -> dict:
  import jax
  from jaxcv import config as config_lib
  from jaxcv import parallel
  from jaxcv.data.dataset import DataInfo
  from jaxcv.evaluators import build_evaluators
  from jaxcv.tasks import build_task
  n, size = _num_examples(), _image_size()
  config = config_lib.load('configs/cifar10/resnet18.py', [
      f'data.name=synthetic:n={n},size={size},classes=10'])
  with config.unlocked():
    config.evals.test.batch_size = batch if not common.smoke() else 32
    config.evals.test.tta = tta
  mesh = parallel.make_mesh(config.mesh, jax.devices()[:1])
  info = DataInfo(num_classes=10, image_shape=(size, size, 3), num_train_examples=n)
  task = build_task(config, info)
  params, model_state = task.init_variables(jax.random.key(0))
  variables = {'params': params, **model_state}
  evaluator = build_evaluators(config, task, mesh)['test']

  def full_pass():
    return dict(evaluator.run(variables))  # Ends with a device_get: synchronised.

  t0 = time.perf_counter()
  with jax.set_mesh(mesh):
    full_pass()
    compile_s = time.perf_counter() - t0
    with common.gpu_lock():
      timing = common.time_fn(full_pass, steps=passes, warmup=1)
  return {'name': name, 'compile_s': compile_s, 'num_examples': n, **timing}


def worker(name: str, passes: int) -> list[dict]:
  if name.startswith('torch'):
    return [measure_torch(name, passes)]
  if name == 'jaxcv':
    return [measure_jaxcv(name, passes),
            measure_jaxcv('jaxcv_b2000', passes, batch=2000),
            measure_jaxcv('jaxcv_tta_flip_translate', passes, tta='flip_translate')]
  raise SystemExit(f'unknown variant {name}')


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--out', default=common.out_dir())
  parser.add_argument('--passes', type=int, default=10)
  parser.add_argument('--parallel', type=int, default=1,
                      help='workers at once (>1 lets compilation disturb the other timings)')
  parser.add_argument('--timeout', type=float, default=120)
  parser.add_argument('--variants', default='torch_eager,torch_compile,jaxcv')
  parser.add_argument('--worker', help=argparse.SUPPRESS)
  parser.add_argument('--result', help=argparse.SUPPRESS)
  args = parser.parse_args(argv)
  if common.smoke():
    args.passes = 2
  if args.worker:
    common.worker_result(args.result, worker(args.worker, args.passes))
    return
  names = [v for v in args.variants.split(',') if v]
  if not common.torch_available():
    names = [n for n in names if not n.startswith('torch')]
  names.sort(key=lambda n: n != 'torch_compile')
  rows = common.run_workers('benchmarks.eval_throughput', [{'name': n} for n in names],
                            parallel=args.parallel, timeout=args.timeout,
                            extra_args=['--passes', str(args.passes)])
  for r in rows:
    if 'seconds_per_call' in r:
      r['img_per_s'] = r['num_examples'] / r['seconds_per_call']
      r['ms_per_pass'] = 1e3 * r['seconds_per_call']
  common.add_ratios(rows, 'img_per_s', BASELINE)
  if not any(r.get('ratio') for r in rows):
    common.add_ratios(rows, 'img_per_s', 'jaxcv')
  common.print_table(rows, ['ratio', 'name', 'img_per_s', 'ms_per_pass', 'num_examples',
                            'compile_s', 'error'],
                     title=f'ResNet-18 evaluation throughput (ratio vs {BASELINE})')
  common.write_json(args.out, 'eval_throughput', {'baseline': BASELINE, 'rows': rows})


if __name__ == '__main__':
  sys.exit(main())
