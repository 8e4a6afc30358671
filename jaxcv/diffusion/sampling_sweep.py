"""The LDM-scaling sampling sweep: best quality per (model, sampler, steps) against sampling cost.

Mei et al. 2024 (arXiv:2404.01367) sample every (model, step count) at a grid of guidance scales,
keep the best FID, and plot it against sampling cost = normalised cost x steps (Figs. 9, 11);
they also plot quality against training compute = normalised cost x iterations (Fig. 3). This
module does both for a width family trained by configs/ldm_scaling/table.py:

  python -m jaxcv.diffusion.sampling_sweep --sweep runs/ldm_scaling \
      --feature_space classifier:runs/cifar10_r18 --num_samples 10000 --out runs/ldm_scaling/sampling

Defaults follow the reproduction plan: DDIM at {2,3,4,6,8,10,15,20,30,50}, DDPM at
{10,20,30,50}, DPM-Solver++(2M) at {2,3,4,6,8,10,15,20}, guidance {1,1.5,2,3,4}. Every point
uses the same class-balanced labels and the same initial noise (common random numbers), so
differences between points are not sampling noise in the starting points. Guidance runs as one
batched pass over [conditional; null] even at scale 1 (identical to the conditional model, see
tests/test_samplers.py), so one compilation per (model, sampler) serves the whole grid.
Sampling cost counts denoiser evaluations as the paper does (normalised cost x steps; the
doubled batch of guidance is the same factor for every model and is left out).

Quality is FID/KID in the given feature space (jaxcv.diffusion.fid_features): with a jaxcv
classifier's features these are proxies, consistent within a run and not comparable with
published FIDs. `--deadline_seconds` stops starting new points after that long and still writes
every output for the points done, so a time-boxed run always leaves results.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from typing import Any, Optional, Sequence

import ml_collections
import numpy as np

from jaxcv import checkpoint as checkpoint_lib
from jaxcv import inference
from jaxcv import parallel
from jaxcv.diffusion import fid as fid_lib
from jaxcv.diffusion import fid_features
from jaxcv.diffusion.samplers import DEFAULT_STEPS, MAX_STEPS, parse_samplers  # noqa: F401
from jaxcv.errors import UserError

log = logging.getLogger(__name__)

DEFAULT_GUIDANCE = (1.0, 1.5, 2.0, 3.0, 4.0)


class Member:
  """One trained model of the family: its run (jaxcv.inference), and its weights at any step."""

  def __init__(self, record: dict, sweep_result: Optional[dict] = None):
    del sweep_result  # Each member's own config.json describes it.
    self.record = record
    self.width = record['width']
    self.workdir = record['workdir']
    run = inference.load_run(self.workdir)
    self.config, self.info, self.task = run.config, run.info, run.task
    self._latest = run.variables

  def checkpoint_steps(self) -> list[int]:
    directory = checkpoint_lib.checkpoint_dir(self.workdir)
    return sorted(int(p) for p in os.listdir(directory) if p.isdigit())

  def variables(self, step: Optional[int] = None) -> dict:
    """The weights the member evaluated with (EMA when it kept and used them), at `step`."""
    if step is None:
      return self._latest
    return inference.load_run(os.path.join(checkpoint_lib.checkpoint_dir(self.workdir),
                                           str(step))).variables


def quality_meter(member: Member, space: fid_features.FeatureSpace, dataset: str, split: str,
                  num_samples: int, batch_size: int, reference_examples: int, mesh):
  """The member's generative evaluator (jaxcv/evaluators/generative.py): one feature space,
  reference and set of labels and initial noise for every member and grid point."""
  from jaxcv.evaluators.generative import GenerativeEvaluator  # pylint: disable=import-outside-toplevel
  eval_config = ml_collections.ConfigDict(dict(
      type='generative', dataset=dataset, split=split, max_reference=reference_examples,
      num_samples=num_samples, batch_size=batch_size, keep=num_samples, kid_subsets=20,
      kid_subset_size=min(1000, num_samples)))
  return GenerativeEvaluator(eval_config, member.config, member.task, mesh, feature_space=space)


def measure(meter, variables, **sample_kwargs) -> dict:
  result = meter.measure(variables, **sample_kwargs)
  return {'fid': result['fid'], 'kid': result['kid'], 'num_samples': result['num_samples']}


def best_per_steps(points: list[dict]) -> list[dict]:
  """The lowest-FID guidance scale of each (width, sampler, steps)."""
  best: dict[tuple, dict] = {}
  for p in points:
    key = (p['width'], p['sampler'], p['steps'])
    if key not in best or p['fid'] < best[key]['fid']:
      best[key] = p
  return [best[k] for k in sorted(best)]


def run(sweep_dir: str, feature_space: str, out: str, *, samplers: dict[str, Sequence[int]],
        guidance: Sequence[float], num_samples: int, batch_size: int = 500,
        reference: str = '', reference_examples: int = 10_000,
        curve_setting: Optional[tuple[str, int, float]] = ('ddim', 20, 2.0),
        deadline_seconds: Optional[float] = None, budget_note: str = '',
        noise_seeds: int = 0, devices: Optional[list] = None) -> dict[str, Any]:
  """Runs the grid (then the training-compute curve, then the proxy's noise) and writes
  results.json/.md and plots.

  `noise_seeds` > 0 measures how noisy the quality proxy is: every member at the curve's
  setting with that many other sampling seeds (other initial noise), and real training images
  against the same reference (the metric's floor at this sample count)."""
  t_start = time.perf_counter()
  record = os.path.join(sweep_dir, 'sweep.json')
  if not os.path.isfile(record):
    raise UserError(f'{record} not found: --sweep names the folder of a trained width family')
  with open(record) as f:
    sweep_result = json.load(f)
  os.makedirs(out, exist_ok=True)
  mesh = parallel.make_mesh(ml_collections.ConfigDict({'data': -1, 'fsdp': 1, 'tensor': 1}),
                            devices)
  members = [Member(r, sweep_result) for r in sweep_result['members']]
  space = fid_features.build_feature_space(feature_space).replicate(parallel.replicated(mesh))
  dataset, _, split = (reference or f'{members[0].config.data.name}:test').rpartition(':')
  meters = {m.width: quality_meter(m, space, dataset, split, num_samples, batch_size,
                                   reference_examples, mesh) for m in members}
  ref = meters[members[0].width].reference
  result = {'sweep': os.path.abspath(sweep_dir), 'feature_space': space.name,
            'reference': f'{dataset}:{split} ({ref.count} images)', 'num_samples': num_samples,
            'guidance': list(guidance), 'samplers': {k: list(v) for k, v in samplers.items()},
            'devices': f'{mesh.size} x {mesh.devices.flat[0].device_kind}',
            'budget': budget_note, 'points': [], 'training_curve': [], 'proxy_noise': None,
            'incomplete': False}

  def out_of_time() -> bool:
    if deadline_seconds is not None and time.perf_counter() - t_start > deadline_seconds:
      result['incomplete'] = True
      return True
    return False

  def record(point: dict, target: list) -> None:
    target.append(point)
    log.info('%s', {k: (round(v, 4) if isinstance(v, float) else v) for k, v in point.items()})
    write_outputs(result, out, plots=False)  # After every point: a killed run leaves tables.

  # One step table length for every point: one compiled sampler per model.
  max_steps = max([s for counts in samplers.values() for s in counts]
                  + ([curve_setting[1]] if curve_setting else []))
  # Models innermost: a deadline leaves every model measured at the same (sampler, steps).
  variables = {m.width: m.variables() for m in members}
  for method, steps_list in samplers.items():
    for steps in steps_list:
      for scale in guidance:
        for member in members:
          if out_of_time():
            break
          cost = member.record['normalized_cost']
          t0 = time.perf_counter()
          quality = measure(meters[member.width], variables[member.width], method=method,
                            num_steps=steps, guidance_scale=scale, max_steps=max_steps)
          record({'width': member.width, 'sampler': method, 'steps': steps, 'guidance': scale,
                  'normalized_cost': cost, 'sampling_cost': cost * steps,
                  'seconds': time.perf_counter() - t0, **quality}, result['points'])

  if curve_setting is not None:
    method, steps, scale = curve_setting
    for member in members:
      cost = member.record['normalized_cost']
      for step in member.checkpoint_steps():
        if out_of_time():
          break
        quality = measure(meters[member.width], member.variables(step), method=method,
                          num_steps=steps, guidance_scale=scale, max_steps=max_steps)
        record({'width': member.width, 'train_step': step, 'training_compute': cost * step,
                'sampler': method, 'steps': steps, 'guidance': scale, **quality},
               result['training_curve'])
  if noise_seeds and curve_setting is not None:
    method, steps, scale = curve_setting
    noise = result['proxy_noise'] = {
        'sampler': method, 'steps': steps, 'guidance': scale, 'points': [],
        'real': real_image_quality(members[0], space, ref, num_samples)}
    for member in members:
      for seed in range(noise_seeds + 1):  # Seed 0 is the grid's own.
        if out_of_time():
          break
        quality = measure(meters[member.width], variables[member.width], seed=seed,
                          method=method, num_steps=steps, guidance_scale=scale,
                          max_steps=max_steps)
        record({'width': member.width, 'seed': seed, **quality}, noise['points'])
  result['seconds'] = time.perf_counter() - t_start
  write_outputs(result, out)
  return result


def real_image_quality(member: Member, space: fid_features.FeatureSpace, reference,
                       num_samples: int) -> dict:
  """FID/KID of `num_samples` real training images (evenly spaced) against the reference: the
  value a perfect generator would score with this many samples."""
  data = member.config.data
  stats = fid_features.reference_stats(space, data.name, 'train', data_dir=data.data_dir,
                                       image_size=data.image_size, max_examples=num_samples)
  result = fid_lib.compare(stats, reference, kid_subsets=20,
                           kid_subset_size=min(1000, num_samples))
  return {'fid': result['fid'], 'kid': result['kid'], 'num_samples': result['num_samples']}


def noise_summary(noise: dict) -> list[dict]:
  """Mean and standard deviation (ddof 1) of FID over the sampling seeds, per width."""
  rows = []
  for width in sorted({p['width'] for p in noise['points']}):
    fids = np.array([p['fid'] for p in noise['points'] if p['width'] == width])
    rows.append({'width': width, 'seeds': len(fids), 'fid_mean': float(fids.mean()),
                 'fid_std': float(fids.std(ddof=1)) if len(fids) > 1 else float('nan')})
  return rows


# ------------------------------------------------------------------------------------ outputs
def write_outputs(result: dict, out: str, plots: bool = True) -> None:
  result = {**result, 'best': best_per_steps(result['points'])}
  with open(os.path.join(out, 'results.json'), 'w') as f:
    json.dump(result, f, indent=2)
  write_markdown(result, os.path.join(out, 'results.md'))
  if not plots:
    return
  try:
    plot(result, out)
  except Exception as e:  # pylint: disable=broad-except
    log.warning('plotting failed: %s', e)


def write_markdown(result: dict, path: str) -> None:
  lines = ['# LDM-scaling sampling sweep (CIFAR-10 analogue)', '',
           f'Feature space: `{result["feature_space"]}` (a proxy FID/KID unless it is '
           f'Inception-v3); reference {result["reference"]}; {result["num_samples"]} samples per '
           f'point; devices: {result["devices"]}.']
  if result.get('budget'):
    lines += ['', f'**Budget:** {result["budget"]}']
  if result.get('incomplete'):
    lines += ['', '**Incomplete:** the time limit stopped the sweep; the tables hold the points '
              'done.']
  lines += ['', '## Best FID over guidance per (model, sampler, steps)', '',
            '| sampler | steps | ' + ' | '.join(f'c={w}' for w in _widths(result)) + ' |',
            '|---|---|' + '---|' * len(_widths(result))]
  best = {(p['width'], p['sampler'], p['steps']): p for p in result['best']}
  for method, steps in sorted({(p['sampler'], p['steps']) for p in result['best']}):
    cells = []
    for w in _widths(result):
      p = best.get((w, method, steps))
      cells.append('' if p is None else f'{p["fid"]:.2f} (w={p["guidance"]:g}, '
                   f'cost {p["sampling_cost"]:.2f})')
    lines.append(f'| {method} | {steps} | ' + ' | '.join(cells) + ' |')
  lines += ['', 'Cell: best FID (guidance scale, sampling cost = normalised cost x steps).']
  winners = winners_by_cost(result['best'])
  if winners:
    lines += ['', '## Best model at a fixed sampling budget', '',
              '| sampler | budget (sampling cost <=) | best width | FID |', '|---|---|---|---|']
    lines += [f'| {m} | {b:.2f} | {w} | {f:.2f} |' for m, b, w, f in winners]
  if result['training_curve']:
    lines += ['', '## FID against training compute', '',
              '| width | train step | training compute | FID | KID |', '|---|---|---|---|---|']
    for p in result['training_curve']:
      kid = '' if p['kid'] is None else f'{p["kid"]:.4f}'
      lines.append(f'| {p["width"]} | {p["train_step"]} | {p["training_compute"]:.1f} | '
                   f'{p["fid"]:.2f} | {kid} |')
  noise = result.get('proxy_noise')
  if noise:
    lines += ['', '## Noise of the quality proxy', '',
              f'{noise["sampler"]} {noise["steps"]} steps, w={noise["guidance"]:g}, '
              f'{result["num_samples"]} samples, one sampling seed per line:', '',
              '| width | seeds | FID mean | FID std |', '|---|---|---|---|']
    lines += [f'| {r["width"]} | {r["seeds"]} | {r["fid_mean"]:.2f} | {r["fid_std"]:.2f} |'
              for r in noise_summary(noise)]
    real = noise['real']
    lines += ['', f'Real training images ({real["num_samples"]}) against the same reference: '
              f'FID {real["fid"]:.2f} (the floor at this sample count). Differences between '
              'grid points smaller than about two standard deviations are not resolved.']
  with open(path, 'w') as f:
    f.write('\n'.join(lines) + '\n')


def _widths(result: dict) -> list[int]:
  return sorted({p['width'] for p in result['points']})


def winners_by_cost(best: list[dict]) -> list[tuple]:
  """For each sampler and budget (each sampling cost that occurs), the lowest FID reachable by
  any (model, steps) within the budget: the paper's "which size wins at a fixed cost"."""
  rows = []
  for method in sorted({p['sampler'] for p in best}):
    points = [p for p in best if p['sampler'] == method]
    for budget in sorted({p['sampling_cost'] for p in points}):
      within = [p for p in points if p['sampling_cost'] <= budget + 1e-9]
      winner = min(within, key=lambda p: p['fid'])
      rows.append((method, budget, winner['width'], winner['fid']))
  return rows


def plot(result: dict, out: str) -> None:
  # Figures of their own, not pyplot: no global backend switch (a notebook's inline figures live).
  from matplotlib.figure import Figure  # pylint: disable=import-outside-toplevel
  from matplotlib.ticker import NullFormatter  # pylint: disable=import-outside-toplevel
  best = result['best']
  methods = [m for m in DEFAULT_STEPS if any(p['sampler'] == m for p in best)]
  note = f'{result["feature_space"]}; {result["num_samples"]} samples'
  if methods:
    fig = Figure(figsize=(5 * len(methods), 4))
    axes = fig.subplots(1, len(methods), squeeze=False)
    for ax, method in zip(axes[0], methods):
      for width in _widths(result):
        pts = sorted((p for p in best if p['sampler'] == method and p['width'] == width),
                     key=lambda p: p['sampling_cost'])
        ax.plot([p['sampling_cost'] for p in pts], [p['fid'] for p in pts], 'o-',
                label=f'c={width}')
      ax.set_xscale('log')
      ax.xaxis.set_minor_formatter(NullFormatter())  # Less than a decade: minor labels overlap.
      ax.set(title=f'{method}: best FID over guidance', xlabel='sampling cost (norm. cost x steps)',
             ylabel='FID (proxy)')
      ax.legend(fontsize=8)
    fig.suptitle(note, fontsize=9)
    fig.tight_layout()
    fig.savefig(os.path.join(out, 'fid_vs_sampling_cost.png'), dpi=110)
    fig = Figure(figsize=(5 * len(methods), 3.6))
    axes = fig.subplots(1, len(methods), squeeze=False)
    for ax, method in zip(axes[0], methods):
      for width in _widths(result):
        pts = sorted((p for p in best if p['sampler'] == method and p['width'] == width),
                     key=lambda p: p['steps'])
        ax.plot([p['steps'] for p in pts], [p['guidance'] for p in pts], 'o-', label=f'c={width}')
      ax.set(title=f'{method}: best guidance scale', xlabel='steps', ylabel='guidance')
      ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(os.path.join(out, 'best_guidance.png'), dpi=110)
  curve = result['training_curve']
  if curve:
    fig = Figure(figsize=(5, 4))
    ax = fig.subplots()
    for width in sorted({p['width'] for p in curve}):
      pts = sorted((p for p in curve if p['width'] == width), key=lambda p: p['train_step'])
      ax.plot([p['training_compute'] for p in pts], [p['fid'] for p in pts], 'o-',
              label=f'c={width}')
    ax.set_xscale('log')
    p0 = curve[0]
    ax.set(title=f'FID vs training compute ({p0["sampler"]} {p0["steps"]} steps, '
           f'w={p0["guidance"]:g})', xlabel='training compute (norm. cost x iterations)',
           ylabel='FID (proxy)')
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(os.path.join(out, 'fid_vs_training_compute.png'), dpi=110)


def main(argv: Optional[Sequence[str]] = None) -> int:
  from jaxcv.main import ArgumentParser, setup_logging  # pylint: disable=import-outside-toplevel
  parser = ArgumentParser(prog='python -m jaxcv.diffusion.sampling_sweep',
                          description=__doc__.split('\n')[0])
  parser.add_argument('--sweep', required=True, help='workdir of jaxcv.diffusion.sweep')
  parser.add_argument('--feature_space', '--feature-space', required=True,
                      help="'classifier:<checkpoint>' or 'inception[:<weights>]'")
  parser.add_argument('--out', default=None, help='default: <sweep>/sampling')
  parser.add_argument('--samplers', default='ddim,ddpm,dpm_solver_pp',
                      help="e.g. 'ddim(steps=(2,4,8)),dpm_solver_pp(steps=(4,8))' (no steps: the "
                           'defaults)')
  parser.add_argument('--guidance', default=','.join(f'{g:g}' for g in DEFAULT_GUIDANCE))
  parser.add_argument('--num_samples', '--num-samples', type=int, default=10_000)
  parser.add_argument('--batch_size', '--batch-size', type=int, default=500)
  parser.add_argument('--reference', default='', help='dataset:split (default <data>:test)')
  parser.add_argument('--reference_examples', '--reference-examples', type=int, default=10_000)
  parser.add_argument('--curve', default='ddim:20:2',
                      help="sampler:steps:guidance for FID vs training compute; 'none' to skip")
  parser.add_argument('--deadline_seconds', '--deadline-seconds', type=float, default=None)
  parser.add_argument('--budget_note', '--budget-note', default='')
  parser.add_argument('--noise_seeds', '--noise-seeds', type=int, default=0,
                      help='other sampling seeds at the curve setting: the proxy metric\'s noise')
  parser.add_argument('--replot', action='store_true',
                      help='only redraw tables and plots from <out>/results.json')
  args = parser.parse_args(argv)
  if args.replot:
    out = args.out or os.path.join(args.sweep, 'sampling')
    with open(os.path.join(out, 'results.json')) as f:
      write_outputs(json.load(f), out)
    return 0
  setup_logging()
  try:
    curve = None
    if args.curve != 'none':
      method, steps, scale = args.curve.split(':')
      curve = (method, int(steps), float(scale))
    result = run(args.sweep, args.feature_space, args.out or os.path.join(args.sweep, 'sampling'),
                 samplers=parse_samplers(args.samplers),
                 guidance=[float(g) for g in args.guidance.split(',')],
                 num_samples=args.num_samples, batch_size=args.batch_size,
                 reference=args.reference, reference_examples=args.reference_examples,
                 curve_setting=curve, deadline_seconds=args.deadline_seconds,
                 budget_note=args.budget_note, noise_seeds=args.noise_seeds)
  except (UserError, ValueError) as e:  # ValueError: a malformed --curve or --guidance.
    print(f'error: {e}', file=sys.stderr)
    return 2
  print(f'{len(result["points"])} points, {len(result["training_curve"])} curve points in '
        f'{result["seconds"]:.0f}s; results in {args.out or os.path.join(args.sweep, "sampling")}')
  return 0


if __name__ == '__main__':
  sys.exit(main())
