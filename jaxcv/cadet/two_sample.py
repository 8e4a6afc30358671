"""CADet §(a) end to end: power of the MMD permutation test against sample size, for the
contrastive cosine kernel of an encoder and the Gaussian pixel kernel, with the type-I check.

Every trial draws fresh samples. The null: X and Y are two disjoint random samples of n images
of the ID test split (the rejection rate is the type-I error, ~alpha). The shift, by `shift`:
  'corrupt(kind=...,severity=...)'    X clean and Y corrupted test images (a BROAD corruption, a
                                      derived dataset of the ID split), drawn at 2n distinct
                                      indices, so Y never shows an image that X holds
  'cifar10_1'                         Y from CIFAR-10.1 v4 (jaxcv/cadet/data.py; the paper's
                                      test), X from the ID test split
  'NAME@SPLIT'                        Y from any other dataset (resized to the ID image shape)
Images are embedded once, as they are (no views); the cosine kernel reads the embeddings, the
Gaussian kernel the flattened pixels in [0, 1].

As a table row: `table_row(workdir, run=<SimCLR run>, ...)` (a function row of
configs/cadet/table.py) writes two_sample.json and returns flat metrics
'power/<kernel>/n<N>' and 'type1/<kernel>/n<N>' (percent).
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Optional, Sequence, Union

import jax
import numpy as np

from jaxcv import inference
from jaxcv.cadet import mmd
from jaxcv.cadet.data import load_cifar10_1
from jaxcv.data import registry
from jaxcv.ood import broad
from jaxcv.ood import features as features_lib

RESULTS_FILE = 'two_sample.json'
SIZES = (50, 100, 200, 500, 1000, 2000)


def _pixels(images: np.ndarray, image_shape) -> np.ndarray:
  """float32 [N, H*W*C] pixels in [0, 1] at the ID image shape."""
  fn = jax.jit(lambda b: features_lib.prepare_images(b, image_shape))
  out = features_lib.map_batches(lambda _, b: fn(b), None, images, 500)
  return np.asarray(out, np.float32).reshape(len(images), -1)


def shifted_images(shift: str, data_name: str, data_dir,
                   image_size) -> tuple[np.ndarray, str, bool]:
  """(images of the shifted sample, its description, whether they are aligned with the ID test
  split image by image) for a `shift` spec (module docstring)."""
  if shift == 'cifar10_1':
    data = load_cifar10_1(data_dir)
    return data.images, data.source, False
  if shift.startswith('corrupt'):
    data = registry.load_dataset(f'{shift}:{data_name}', 'test', data_dir, image_size)
    return data.images, f'{shift} of {data_name} test', True
  name, _, split = shift.partition('@')
  data = registry.load_dataset(name, split or 'test', data_dir)
  return data.images, data.source, False


def run_power(embed, variables, data_name: str, *, shift: str = 'corrupt(kind=gaussian_noise,'
              'severity=1)', data_dir: Optional[str] = None, image_size=None,
              sizes: Union[str, Sequence[int]] = SIZES, trials: int = 20,
              permutations: int = 100, alpha: float = 0.05,
              kernels: Union[str, Sequence[str]] = mmd.KERNELS, seed: int = 0,
              batch_size: int = 500, out_dir: Optional[str] = None) -> dict:
  """{'power': {kernel: {n: {rate, mean_p, mean_mmd2}}}, 'type1': (the same on the null)}."""
  kernels = [k for k in broad._list(kernels)]  # pylint: disable=protected-access
  for k in kernels:
    mmd.kernel_fn(k)  # Unknown kernels fail before any work.
  sizes = [int(n) for n in broad._list(sizes)]  # pylint: disable=protected-access
  test = registry.load_dataset(data_name, 'test', data_dir, image_size)
  image_shape = test.image_shape
  y_images, y_source, aligned = shifted_images(shift, data_name, data_dir, image_size)
  sets = {'x': test.images, 'shift': y_images}
  pools = {}
  for kernel in kernels:
    if kernel == 'cosine':
      fn = jax.jit(lambda v, b: embed(v, features_lib.prepare_images(b, image_shape)))
      pools[kernel] = {k: np.asarray(features_lib.map_batches(fn, variables, v, batch_size),
                                     np.float32) for k, v in sets.items()}
    else:
      pools[kernel] = {k: _pixels(v, image_shape) for k, v in sets.items()}
  results = {'id_dataset': data_name, 'shift': shift, 'shift_source': y_source,
             'pool_sizes': {k: len(v) for k, v in sets.items()}, 'aligned': aligned,
             'trials': trials,
             'permutations': permutations, 'alpha': alpha, 'seed': seed,
             'power': {}, 'type1': {}}
  for kernel in kernels:
    p = pools[kernel]
    results['power'][kernel] = power = mmd.power_curve(
        p['x'], p['shift'], kernel, sizes, trials=trials, permutations=permutations,
        alpha=alpha, seed=seed, disjoint=aligned)
    results['type1'][kernel] = mmd.power_curve(
        p['x'], p['x'], kernel, [n for n in sizes if n in power], trials=trials,
        permutations=permutations, alpha=alpha, seed=seed + 7, disjoint=True)
  if out_dir:
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    (Path(out_dir) / RESULTS_FILE).write_text(json.dumps(results, indent=2))
  return results


def flat_metrics(results: dict) -> dict[str, float]:
  out = {}
  for what in ('power', 'type1'):
    for kernel, by_n in results[what].items():
      out.update({f'{what}/{kernel}/n{n}': 100 * r['rate'] for n, r in by_n.items()})
  return out


def table_row(workdir: str, run: str, **settings) -> dict[str, float]:
  """A function row: run_power on the SimCLR run at `run` (its 'embedding', its ID data)."""
  loaded = inference.load_run(run)
  data = loaded.config.data
  settings.setdefault('data_dir', data.get('data_dir') or None)
  results = run_power(loaded.predict_fns['embedding'], loaded.variables, data.name,
                      image_size=data.get('image_size'), out_dir=workdir, **settings)
  return flat_metrics(results)


def plot_power(runs: Sequence[dict], path: str, title: str) -> None:
  """Power (solid) and type-I error (dashed) against n per kernel, mean over runs, with the
  nominal alpha and MMD-D's 0.744 on CIFAR-10.1 (n = 1031) for reference."""
  from matplotlib.figure import Figure  # pylint: disable=import-outside-toplevel
  fig = Figure(figsize=(5.5, 3.8))
  ax = fig.add_subplot()
  colors = {'cosine': 'tab:blue', 'gaussian': 'tab:orange'}
  labels = {'cosine': 'contrastive cosine kernel', 'gaussian': 'Gaussian pixel kernel'}
  for kernel in runs[0]['power']:
    for what, style in (('power', '-'), ('type1', '--')):
      # JSON keys are strings; the Gaussian kernel is run for the first encoder only.
      curves = [{int(n): v['rate'] for n, v in r[what][kernel].items()} for r in runs
                if kernel in r[what]]
      ns = sorted(curves[0])
      rates = np.array([[c[n] for n in ns] for c in curves])
      ax.errorbar(ns, rates.mean(0), yerr=rates.std(0, ddof=1) if len(curves) > 1 else None,
                  fmt=style, marker='o', color=colors.get(kernel), capsize=2,
                  label=f'{labels.get(kernel, kernel)}: {"power" if what == "power" else "type I"}'
                        f' (n={len(curves)})')
  ax.axhline(runs[0]['alpha'], color='grey', lw=0.8, ls=':', label=f'alpha = {runs[0]["alpha"]}')
  ax.plot([1031], [0.744], 'k*', label='MMD-D on CIFAR-10.1 (0.744)')
  ax.set_xscale('log')
  ax.set_ylim(-0.02, 1.02)
  ax.set_xlabel('sample size n (per side)')
  ax.set_ylabel('rejection rate')
  ax.set_title(textwrap.fill(title, 70), fontsize=8)
  ax.legend(fontsize=6.5, loc='center right')
  fig.tight_layout()
  fig.savefig(path, dpi=120)
