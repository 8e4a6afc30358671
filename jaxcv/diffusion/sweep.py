"""Trains a width family of diffusion models with one shared recipe, logging training compute.

  python -m jaxcv.diffusion.sweep --config configs/ldm_scaling/cifar10_unet.py:steps=50000 \
      --widths 32,48,64,96,128 --workdir runs/ldm_scaling [--config.batch_size=256 ...]

Each width runs `train.run` in this process (width=W is appended to the config argument, so the
config file must accept a `width` argument), in `<workdir>/w<W>`. For each member the forward
FLOPs of one denoiser call at batch 1 (XLA cost analysis of the lowered float32 forward, as the
paper counts GFLOPs) give the normalised cost = FLOPs / FLOPs(reference width) (Mei et al. 2024:
normalised to their c = 320 model; here to the largest width of the sweep unless
--reference_width says otherwise) and the training compute = normalised cost x iterations.
Results: `<workdir>/sweep.json` and `sweep.md`. A rerun resumes every member's training.
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import os
import sys
import time
from typing import Any, Optional, Sequence

import jax
import jax.numpy as jnp

from jaxcv import config as config_lib
from jaxcv import train
from jaxcv.errors import ConfigError, UserError

log = logging.getLogger(__name__)


def _fmt(value, spec: str) -> str:
  """A table cell; '-' for values a resumed, already finished member does not report."""
  return '-' if value is None else format(value, spec)

def member_spec(spec: str, width: int) -> str:
  """`file.py:args` with width=W appended to the argument string."""
  path, _, arg = spec.partition(':')
  return f'{path}:{arg + "," if arg else ""}width={width}'


def member_config(spec: str, width: int, overrides: Sequence[str] = ()):
  return config_lib.load(member_spec(spec, width), list(overrides))


def forward_flops(config) -> float:
  """FLOPs of one float32 denoiser forward at batch 1 (with its conditioning), from XLA's cost
  analysis of the computation lowered on the host CPU (jaxcv.diffusion.cost: nothing is compiled
  and no parameters are materialised)."""
  from jaxcv.data import open_train_data  # pylint: disable=import-outside-toplevel
  from jaxcv.tasks import build_task  # pylint: disable=import-outside-toplevel
  config = copy.deepcopy(config)
  config.unlock()
  config.dtype = 'float32'  # The paper's GFLOPs are FP32 forwards.
  _, info = open_train_data(config)
  task = build_task(config, info)
  params = jax.eval_shape(lambda r: task.init_variables(r)[0], jax.random.key(0))
  x = jax.ShapeDtypeStruct((1, *task.sample_shape), jnp.float32)
  t = jax.ShapeDtypeStruct((1,), jnp.int32)
  cond = jax.eval_shape(lambda: task.null_condition(jnp.zeros((1, *task.sample_shape))))
  forward = jax.jit(lambda p, x, t, c: task.denoise({'params': p}, x, t, c))
  from jaxcv.diffusion import cost  # pylint: disable=import-outside-toplevel
  # Lowered on the host: a GPU would compile the whole forward just to count its FLOPs.
  return cost.xla_flops(forward.lower(*cost.on_host((params, x, t, cond))))


def write_markdown(result: dict, path: str) -> None:
  lines = [f'# Width sweep: {result["config"]}', '',
           f'Normalised cost = forward FLOPs / FLOPs(width {result["reference_width"]}); '
           'training compute = normalised cost x iterations.', '',
           '| width | parameters | GFLOPs/forward | norm. cost | steps | training compute | '
           'final loss | examples/s | train seconds |',
           '|---|---|---|---|---|---|---|---|---|']
  for m in result['members']:
    lines.append(f'| {m["width"]} | {m["parameters"] / 1e6:.2f}M | {m["gflops"]:.3f} | '
                 f'{m["normalized_cost"]:.3f} | {m["steps"]} | {m["training_compute"]:.1f} | '
                 f'{_fmt(m["final_loss"], ".4f")} | {_fmt(m["examples_per_sec"], "")} | '
                 f'{m["seconds"]:.0f} |')
  lines += ['', f'Devices: {result["devices"]}.']
  with open(path, 'w') as f:
    f.write('\n'.join(lines) + '\n')


def run_sweep(spec: str, widths: Sequence[int], workdir: str, overrides: Sequence[str] = (),
              reference_width: Optional[int] = None,
              devices: Optional[list[jax.Device]] = None,
              deadline_seconds: Optional[float] = None) -> dict[str, Any]:
  """Trains every width (resuming finished or partial members) and writes sweep.json/.md.

  With `deadline_seconds`, no new width starts after that long (the record says which ran).
  """
  t_start = time.perf_counter()
  if not widths:
    raise ConfigError('--widths is empty')
  os.makedirs(workdir, exist_ok=True)
  reference_width = reference_width or max(widths)
  members = []
  skipped = []
  for width in widths:
    if deadline_seconds is not None and time.perf_counter() - t_start > deadline_seconds:
      skipped.append(width)
      continue
    config = member_config(spec, width, overrides)
    member_dir = os.path.join(workdir, f'w{width}')
    log.info('sweep: width %d -> %s', width, member_dir)
    t0 = time.perf_counter()
    summary = train.run(config, member_dir, devices=devices)
    seconds = time.perf_counter() - t0
    members.append({'width': width, 'workdir': os.path.abspath(member_dir),
                    'parameters': summary['parameters'], 'steps': summary['steps'],
                    'batch_size': config.batch_size, 'final_loss': summary.get('train/loss'),
                    'examples_per_sec': summary.get('examples_per_sec'), 'seconds': seconds,
                    'flops': forward_flops(config)})
  reference = (next(m['flops'] for m in members if m['width'] == reference_width)
               if reference_width in [m['width'] for m in members] else
               forward_flops(member_config(spec, reference_width, overrides)))
  for m in members:
    m['gflops'] = m['flops'] / 1e9
    m['normalized_cost'] = m['flops'] / reference
    m['training_compute'] = m['normalized_cost'] * m['steps']
  result = {'config': spec, 'overrides': list(overrides), 'reference_width': reference_width,
            'devices': f'{len(devices or jax.devices())} x {jax.devices()[0].device_kind}',
            'members': members, 'skipped_widths': skipped}
  if jax.process_index() == 0:
    with open(os.path.join(workdir, 'sweep.json'), 'w') as f:
      json.dump(result, f, indent=2)
    write_markdown(result, os.path.join(workdir, 'sweep.md'))
  return result


def main(argv: Optional[Sequence[str]] = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--config', required=True, help='config file[:args]; must take width=')
  parser.add_argument('--widths', required=True, help='comma-separated base widths')
  parser.add_argument('--workdir', required=True)
  parser.add_argument('--reference_width', '--reference-width', type=int, default=None)
  args, rest = parser.parse_known_args(argv)
  overrides = []
  for item in rest:
    if not item.startswith('--config.'):
      parser.error(f'unrecognised argument {item!r} (overrides look like --config.key=value)')
    overrides.append(item[len('--config.'):])
  logging.basicConfig(level=logging.INFO, format='%(asctime)s %(levelname)s %(message)s')
  try:
    widths = [int(w) for w in args.widths.split(',') if w.strip()]
  except ValueError:
    parser.error(f'--widths must be integers, got {args.widths!r}')
  try:
    result = run_sweep(args.config, widths, args.workdir, overrides, args.reference_width)
  except UserError as e:
    print(f'error: {e}', file=sys.stderr)
    return 1
  with open(os.path.join(args.workdir, 'sweep.md')) as f:
    print(f.read())
  del result
  return 0


if __name__ == '__main__':
  sys.exit(main())
