"""The LDM-scaling width family as table rows (configs/ldm_scaling/table.py): the cost of each
trained width and the sampling sweep over them.

Mei et al. 2024 (arXiv:2404.01367) compare a UNet family trained with one recipe, changing only
the base width c. Each width is an ordinary row of the table (`train.run` of the family config
with width=W). Two analysis rows follow:
- `width_costs`: for each width, the forward FLOPs of one denoiser call at batch 1 (XLA cost
  analysis of the lowered float32 forward, as the paper counts GFLOPs), the normalised cost =
  FLOPs / FLOPs(reference width) (the paper normalises to its c = 320 model; here to the largest
  width unless told otherwise) and training compute = normalised cost x iterations; it writes
  sweep.json / sweep.md, the members' record the sampling sweep reads;
- `sampling`: jaxcv.diffusion.sampling_sweep over those members (best quality per model and
  steps against sampling cost, and quality against training compute).
"""

from __future__ import annotations

import copy
import json
import os
from typing import Any, Optional, Sequence

import jax
import jax.numpy as jnp

from jaxcv import config as config_lib
from jaxcv.errors import ConfigError


def _fmt(value, spec: str) -> str:
  """A table cell; '-' for values a member does not report."""
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
           'final loss | examples/s |',
           '|---|---|---|---|---|---|---|---|']
  for m in result['members']:
    lines.append(f'| {m["width"]} | {m["parameters"] / 1e6:.2f}M | {m["gflops"]:.3f} | '
                 f'{m["normalized_cost"]:.3f} | {m["steps"]} | {m["training_compute"]:.1f} | '
                 f'{_fmt(m["final_loss"], ".4f")} | {_fmt(m["examples_per_sec"], "")} |')
  lines += ['', f'Devices: {result["devices"]}.']
  with open(path, 'w') as f:
    f.write('\n'.join(lines) + '\n')


def width_costs(workdir: str, config: str, runs: dict[str, str],
                reference_width: Optional[int] = None,
                overrides: Sequence[str] = ()) -> dict[str, Any]:
  """Cost record of the trained widths (a table row): `runs` maps each width to its row's
  workdir, `config` is the family's `file.py:args` (and `overrides`) the rows trained; writes
  sweep.json and sweep.md into `workdir` and returns per-width metrics."""
  runs = {str(w): path for w, path in runs.items()}
  widths = sorted(int(w) for w in runs)
  if not widths:
    raise ConfigError('width_costs needs at least one trained width')
  reference_width = reference_width or max(widths)
  members = []
  for width in widths:
    run_dir = runs[str(width)]
    with open(os.path.join(run_dir, 'summary.json')) as f:
      summary = json.load(f)
    member = member_config(config, width, overrides)
    members.append({'width': width, 'workdir': os.path.abspath(run_dir),
                    'parameters': summary['parameters'], 'steps': summary['steps'],
                    'batch_size': member.batch_size, 'final_loss': summary.get('train/loss'),
                    'examples_per_sec': summary.get('examples_per_sec'),
                    'flops': forward_flops(member)})
  reference = (next(m['flops'] for m in members if m['width'] == reference_width)
               if reference_width in widths
               else forward_flops(member_config(config, reference_width, overrides)))
  for m in members:
    m['gflops'] = m['flops'] / 1e9
    m['normalized_cost'] = m['flops'] / reference
    m['training_compute'] = m['normalized_cost'] * m['steps']
  result = {'config': config, 'overrides': list(overrides), 'reference_width': reference_width,
            'devices': f'{jax.device_count()} x {jax.devices()[0].device_kind}',
            'members': members}
  with open(os.path.join(workdir, 'sweep.json'), 'w') as f:
    json.dump(result, f, indent=2)
  write_markdown(result, os.path.join(workdir, 'sweep.md'))
  return {f'w{m["width"]}/{key}': m[key] for m in members
          for key in ('parameters', 'gflops', 'normalized_cost', 'training_compute')}


def sampling(workdir: str, sweep: str, classifier: str, samplers: str, guidance: str,
             num_samples: int, reference_examples: int = 10_000, curve: str = 'ddim,20,2.0',
             batch_size: int = 500, noise_seeds: int = 0) -> dict[str, Any]:
  """The sampling sweep over the members recorded in `sweep` (a table row): quality in the
  feature space of the classifier run `classifier`; outputs (results.json/.md, plots) in
  `workdir`. Returns the best quality per (width, sampler, steps)."""
  from jaxcv.diffusion import sampling_sweep  # pylint: disable=import-outside-toplevel
  method, steps, scale = curve.split(',') if curve else (None, None, None)
  result = sampling_sweep.run(
      sweep, f'classifier:{classifier}', workdir,
      samplers=sampling_sweep.parse_samplers(samplers),
      guidance=[float(g) for g in str(guidance).split(';')], num_samples=num_samples,
      batch_size=min(batch_size, num_samples), reference_examples=reference_examples,
      curve_setting=(method, int(steps), float(scale)) if curve else None,
      noise_seeds=noise_seeds)
  metrics = {f'w{p["width"]}/{p["sampler"]}{p["steps"]}/fid': p['fid']
             for p in sampling_sweep.best_per_steps(result['points'])}
  if result['proxy_noise']:
    metrics['real/fid'] = result['proxy_noise']['real']['fid']
    for r in sampling_sweep.noise_summary(result['proxy_noise']):
      metrics[f'w{r["width"]}/noise/fid_std'] = r['fid_std']
  return metrics
