"""CADet's single-sample detection benchmark at CIFAR scale (the reproduction plan of
../shared/papers/09-cadet-ood.md), for any embedding function (a SimCLR run's 'embedding').

    results = benchmark.run_detection(embed, variables, 'cifar10', classifier=clf,
                                      out_dir='runs/cadet/cadet_s0')

1. ID splits of the test split, disjoint and seeded: the calibration images (X_val1 + X_val2,
   CADet's held-out ID sets), ID-val (the sanity row: ID against ID, AUROC ~ 50) and ID-test
   (scored against every shift). No OOD image and no label enters any fitting step.
2. Shift splits, `ood_examples` images each, BROAD's builders reused (jaxcv/ood/broad.py,
   jaxcv/ood/shifts): novel classes (Tiny-ImageNet val, DTD, MNIST), CIFAR-10-C-style
   corruptions, and adversarial images crafted against a *separately trained supervised*
   classifier (PGD-10 and FGSM at L-inf 8/255, unbounded CW-L2), scored as crafted (float).
3. For each (n_views, min_scale) setting: a CADet detector calibrated on X_val1 / X_val2; the
   three terms m_in, m_out and their combination scored on every split from one pass of views.
4. AUROC (OpenOOD's, percent, OOD positive) per split, per shift type and overall (BROAD's
   `summarize`), FPR@95TPR / AUPR of the main setting, and the calibrated p-values: the rate of
   ID-test images with p <= alpha (should be about alpha) and of each split's (detection rate).
"""

from __future__ import annotations

import itertools
import json
import logging
import time
from pathlib import Path
from typing import Optional, Sequence, Union

import jax
import numpy as np

from jaxcv.cadet.detector import CADet
from jaxcv.cadet.score import TERMS
from jaxcv.data import registry
from jaxcv.data.dataset import ArrayDataset
from jaxcv.errors import ConfigError
from jaxcv.ood import broad
from jaxcv.ood import features as features_lib
from jaxcv.ood import metrics as metrics_lib
from jaxcv.ood.shifts import subsample
from jaxcv.ood.shifts.adversarial import AttackSettings

log = logging.getLogger(__name__)

RESULTS_FILE = 'cadet_results.json'
NOVEL = broad.NOVEL
CORRUPTIONS = 'gaussian_noise,contrast'
ATTACKS = 'pgd,fgsm,cw'


def _list(value) -> list:
  return broad._list(value)  # pylint: disable=protected-access  (one list grammar for both)


def method_name(term: str, n_views: int, min_scale: float, main: bool) -> str:
  return term if main else f'{term}[n_t={n_views},s={min_scale:g}]'


def id_splits(data_name: str, data_dir, image_size, *, calibration: int, id_val: int,
              id_test: int, seed: int) -> dict[str, ArrayDataset]:
  """Disjoint seeded cuts of the ID test split: calibration, id_val, id_test (0: the rest)."""
  pool = registry.load_dataset(data_name, 'test', data_dir, image_size)
  if calibration + id_val >= len(pool):
    raise ConfigError(f'calibration ({calibration}) + ID-val ({id_val}) leave no ID-test image '
                      f'of {len(pool)}')
  order = np.random.default_rng(seed).permutation(len(pool))
  end = len(pool) if not id_test else min(len(pool), calibration + id_val + id_test)
  cut = lambda a, b: pool.subset(np.sort(order[a:b]))
  return {'calibration': cut(0, calibration), 'id_val': cut(calibration, calibration + id_val),
          'id_test': cut(calibration + id_val, end)}


def adversarial_splits(classifier, data_name: str, data_dir, image_size, attacks, *,
                       ood_examples: int, attack_steps: int, cw_steps: int, seed: int,
                       batch_size: int, cache_dir) -> tuple[list[broad.Split], dict]:
  """Adversarial splits crafted on `classifier` from seeded clean test images (BROAD's cached
  crafting), and the classifier's accuracy on the clean and each attacked set (percent)."""
  clean = subsample(registry.load_dataset(data_name, 'test', data_dir, image_size), ood_examples,
                    seed)
  image_shape = clean.image_shape
  accuracy = lambda images: metrics_lib.accuracy(
      features_lib.extract(classifier, images, clean.labels, image_shape=image_shape,
                           batch_size=batch_size, name='accuracy').logits, clean.labels)
  splits, accuracies = [], {'clean': accuracy(clean.images)}
  for attack in _list(attacks):
    settings = AttackSettings(attack, steps=cw_steps if attack == 'cw' else attack_steps)
    # BROAD's cached crafting: every encoder's benchmark shares the crafted sets.
    crafted = broad._crafted  # pylint: disable=protected-access
    images = crafted(classifier, clean, settings, seed, batch_size, cache_dir)
    splits.append(broad.Split(attack, 'adversarial', images, clean.labels,
                              f'{settings.name} crafted on {classifier.name}, float'))
    accuracies[attack] = accuracy(images)
  return splits, accuracies


def run_detection(embed, variables, data_name: str, *, classifier=None,
                  data_dir: Optional[str] = None, image_size=None,
                  n_views: Union[str, Sequence[int]] = (10,),
                  min_scales: Union[str, Sequence[float]] = (0.2,),
                  novel: Union[str, Sequence[str]] = NOVEL,
                  corruptions: Union[str, Sequence[str]] = CORRUPTIONS,
                  severities: Union[str, Sequence[int]] = (5,),
                  attacks: Union[str, Sequence[str]] = ATTACKS, attack_steps: int = 10,
                  cw_steps: int = 50, ood_examples: int = 1000, calibration_examples: int = 1000,
                  val1_fraction: float = 0.5, id_val_examples: int = 500,
                  id_test_examples: int = 2000, alpha: float = 0.05, batch_size: int = 100,
                  seed: int = 0, cache: bool = True, out_dir: Optional[str] = None,
                  encoder_name: str = 'encoder') -> dict:
  """The CADet benchmark (module docstring) of `embed(variables, float images) -> [N, d]`.
  `classifier` (a jaxcv.inference.Classifier) is the model the adversarial images are crafted
  on; None skips the adversarial splits. The first (n_views, min_scale) is the main setting."""
  start = time.perf_counter()
  settings = list(itertools.product([int(n) for n in _list(n_views)],
                                    [float(s) for s in _list(min_scales)]))
  if not settings:
    raise ConfigError('run_detection needs at least one n_views and one min_scale')
  cache_dir = features_lib.default_cache_dir() if cache else None
  ids = id_splits(data_name, data_dir, image_size, calibration=calibration_examples,
                  id_val=id_val_examples, id_test=id_test_examples, seed=seed)
  image_shape = ids['id_test'].image_shape
  shifts = broad.build_splits(None, None, data_name, data_dir, image_size, novel=novel,
                              corruptions=corruptions, severities=severities, attacks='',
                              synthetic=(), mosaics=False, ood_examples=ood_examples,
                              attack_steps=attack_steps, seed=seed, batch_size=batch_size,
                              cache_dir=cache_dir)
  attack_accuracy = {}
  if classifier is not None and _list(attacks):
    crafted, attack_accuracy = adversarial_splits(
        classifier, data_name, data_dir, image_size, attacks, ood_examples=ood_examples,
        attack_steps=attack_steps, cw_steps=cw_steps, seed=seed, batch_size=batch_size,
        cache_dir=cache_dir)
    shifts += crafted
  build_seconds = time.perf_counter() - start

  images = {'id_val': ids['id_val'].images, 'id_test': ids['id_test'].images,
            **{s.name: s.images for s in shifts}}
  rng = jax.random.key(seed)
  scores, pvalues, gammas, seconds = {}, {}, {}, {}
  for index, (n, scale) in enumerate(settings):
    t0 = time.perf_counter()
    det = CADet(n_views=n, min_scale=scale, val1_fraction=val1_fraction, batch_size=batch_size)
    det.fit_images(embed, variables, ids['calibration'].images, jax.random.fold_in(rng, index),
                   image_shape=image_shape)
    by_split = {k: det.score_terms(embed, variables, v,
                                   jax.random.fold_in(rng, 1000 * (index + 1) + i))
                for i, (k, v) in enumerate(images.items())}
    for term in TERMS:
      name = method_name(term, n, scale, main=index == 0)
      scores[name] = {k: v[term] for k, v in by_split.items()}
      if index == 0:
        pvalues[name] = {k: float(np.mean(det.p_values(v, term) <= alpha))
                         for k, v in scores[name].items()}
    gammas[f'n_t={n},s={scale:g}'] = det.calibration.gamma
    seconds[f'n_t={n},s={scale:g}'] = round(time.perf_counter() - t0, 1)
    log.info('CADet n_t=%d, min_scale=%g: %d splits in %.1f s', n, scale, len(images),
             seconds[f'n_t={n},s={scale:g}'])

  shift_of = {s.name: s.shift for s in shifts}
  summary = broad.summarize(scores, shift_of)
  main = [method_name(t, *settings[0], main=True) for t in TERMS]
  full = {m: {s: metrics_lib.ood_metrics(scores[m]['id_test'], scores[m][s]) for s in shift_of}
          for m in main}
  results = {
      'encoder': encoder_name, 'classifier': getattr(classifier, 'name', None),
      'id_dataset': data_name, 'seed': seed, 'metrics_unit': 'percent',
      'settings': [{'n_views': n, 'min_scale': s} for n, s in settings],
      'gamma': gammas, 'alpha': alpha,
      'splits': {**{k: {'shift': 'id', 'examples': len(v), 'source': v.source}
                    for k, v in ids.items()},
                 **{s.name: {'shift': s.shift, 'examples': len(s.images), 'source': s.source,
                             'dtype': str(s.images.dtype)} for s in shifts}},
      'attack_accuracy': attack_accuracy, 'auroc': summary, 'metrics': full,
      'rejection_rate': pvalues,
      'seconds': {'build_splits': round(build_seconds, 1), 'scoring': seconds,
                  'total': round(time.perf_counter() - start, 1)},
  }
  if out_dir:
    write_results(results, out_dir)
  return results


def write_results(results: dict, out_dir) -> None:
  """cadet_results.json and cadet_results.md in out_dir."""
  Path(out_dir).mkdir(parents=True, exist_ok=True)
  for name, text in ((RESULTS_FILE, json.dumps(results, indent=2)),
                     ('cadet_results.md', results_markdown(results))):
    (Path(out_dir) / name).write_text(text)


def results_markdown(results: dict) -> str:
  """One run's AUROC tables and its calibrated rejection rates."""
  shifts = {k: v['shift'] for k, v in results['splits'].items() if v['shift'] != 'id'}
  values = {m: {k: [v] for k, v in broad.flatten_method(r).items()}
            for m, r in results['auroc'].items()}
  text = broad.markdown_table(values, list(shifts), shifts,
                              f'CADet: {results["encoder"]}, seed {results["seed"]}')
  return text + rejection_markdown({m: {k: [v] for k, v in r.items()}
                                    for m, r in results['rejection_rate'].items()},
                                   results['alpha'])


def rejection_markdown(rates: dict[str, dict[str, list[float]]], alpha: float) -> str:
  """Rows: terms; columns: splits; cells: % of images with calibrated p <= alpha."""
  if not rates:
    return ''
  splits = list(next(iter(rates.values())))
  lines = ['', f'## Calibrated p-values: % of images with p <= {alpha:g}', '',
           f'p-values against the X_val2 scores; on id_val / id_test this is the false-alarm '
           f'rate and should be near {100 * alpha:g} %; on a shift split it is the detection rate.',
           '', '| term | ' + ' | '.join(splits) + ' |', '|---' * (len(splits) + 1) + '|']
  for term, by_split in rates.items():
    cells = []
    for s in splits:
      v = 100 * np.asarray(by_split[s])
      cells.append(f'{v.mean():.1f}' + (f' ± {v.std(ddof=1):.1f}' if len(v) > 1 else ''))
    lines.append(f'| {term} | ' + ' | '.join(cells) + ' |')
  return '\n'.join(lines) + '\n'


def flat_metrics(results: dict) -> dict[str, float]:
  """summary.json keys: 'auroc/<method>/<split | type/<t> | overall | sanity>',
  'fpr95/<term>/<split>', 'reject/<term>/<split>', 'attack_accuracy/<split>'."""
  out = {f'attack_accuracy/{k}': v for k, v in results['attack_accuracy'].items()}
  for method, entry in results['auroc'].items():
    out.update({f'auroc/{method}/{k}': v for k, v in broad.flatten_method(entry).items()
                if v is not None})
  for term, by_split in results['metrics'].items():
    out.update({f'fpr95/{term}/{s}': m['fpr95'] for s, m in by_split.items()})
  for term, by_split in results['rejection_rate'].items():
    out.update({f'reject/{term}/{s}': 100 * v for s, v in by_split.items()})
  return out


def render_seeds(row_dirs: Sequence[str], out_dir: str, title: str = 'CADet') -> Optional[dict]:
  """Aggregates several runs' cadet_results.json (in each row folder's `cadet` evaluator
  folder or the folder itself) into out_dir/cadet_table.md, cadet_table.json and
  cadet_auroc.png (a method x split heat map of the mean). None when no run has results."""
  paths = [next((p for p in (Path(d) / 'cadet' / RESULTS_FILE, Path(d) / RESULTS_FILE)
                 if p.is_file()), None) for d in row_dirs]
  runs = [json.loads(p.read_text()) for p in paths if p is not None]
  if not runs:
    return None
  shifts = {k: v['shift'] for k, v in runs[0]['splits'].items() if v['shift'] != 'id'}
  values: dict[str, dict[str, list[float]]] = {}
  rates: dict[str, dict[str, list[float]]] = {}
  for r in runs:
    for method, entry in r['auroc'].items():
      for column, value in broad.flatten_method(entry).items():
        values.setdefault(method, {}).setdefault(column, []).append(value)
    for term, by_split in r['rejection_rate'].items():
      for split, value in by_split.items():
        rates.setdefault(term, {}).setdefault(split, []).append(value)
  encoders = [r['encoder'] for r in runs]
  full_title = f'{title}: {len(runs)} run{"s" * (len(runs) > 1)} ({", ".join(encoders)})'
  text = broad.markdown_table(values, list(shifts), shifts, full_title)
  text += rejection_markdown(rates, runs[0]['alpha'])
  attack = {k: [r['attack_accuracy'][k] for r in runs] for k in runs[0]['attack_accuracy']}
  if attack:
    text += ('\nSupervised classifier accuracy (%) on the clean and attacked images: ' +
             ', '.join(f'{k} {np.mean(v):.1f}' for k, v in attack.items()) + '.\n')
  out = Path(out_dir)
  out.mkdir(parents=True, exist_ok=True)
  (out / 'cadet_table.md').write_text(text)
  (out / 'cadet_table.json').write_text(json.dumps(
      {'title': full_title, 'encoders': encoders, 'seeds': [r['seed'] for r in runs],
       'shifts': shifts, 'auroc': values, 'rejection_rate': rates,
       'attack_accuracy': attack}, indent=2))
  types = [f'type/{t}' for t in broad.SHIFT_TYPES if any(v == t for v in shifts.values())]
  broad.heatmap(values, [*shifts, *types, 'overall', 'sanity'], str(out / 'cadet_auroc.png'),
                full_title)
  return values
