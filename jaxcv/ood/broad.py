"""BROAD (Guille-Escuret et al., arXiv 2308.11480) at CIFAR scale: OOD detectors and score
ensembles on five kinds of distribution shift, AUROC per split, per shift type and overall.

    from jaxcv.ood import broad
    results = broad.run_benchmark('runs/broad/id_s0', transfer_run='runs/broad/transfer',
                                  out_dir='runs/broad/broad_s0')

1. ID splits of the run's dataset: ID-train (a seeded subset; fits the detectors), and the test
   split cut into ID-val (ReAct/KLM fitting, the sanity row), ID-ens (fits the ensembles only)
   and ID-test (scored against every shift).
2. The shift splits (`SHIFT_TYPES`), each `ood_examples` images:
   - novel: other datasets (default Tiny-ImageNet val, DTD textures, MNIST);
   - adversarial: FGSM / PGD-10 (L-inf 8/255) crafted on this classifier (white-box) and on a
     second independently trained one (`transfer_run`), scored as crafted (float);
   - corruption: CIFAR-10-C-style corruptions of test images (shifts/corruptions.py);
   - multiclass: 2x2 mosaics of >= 2 classes; the same-class mosaics are a control, reported but
     not averaged;
   - synthetic: samples of a generative run: `generated(run=...):cifar10` (jaxcv/ood/shifts)
     or ready-made datasets named in `synthetic`.
3. One cached feature pass per split (logits, penultimate and pooled per-layer features, Gram
   statistics), every detector fitted once and scored on every split, the ensembles (ensembles.py)
   fitted on the ID-ens scores of their member detectors.
4. AUROC (OpenOOD's, percent, OOD positive) of ID-test against each split; the shift-type
   mean; `overall` = the mean over shift types, as BROAD averages; the sanity row ID-val vs ID-test.
   For the white-box PGD split also: the classifier's accuracy on it, and the AUROCs after
   rounding the images to uint8 (what a uint8 dataset stores) to measure that weakening.

The `broad` evaluator (jaxcv/evaluators/broad.py) runs it on the weights the loop gives it, so
a table row is an evaluation-only run of a trained classifier (configs/broad/evaluate.py).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np

from jaxcv.data import cache, registry
from jaxcv.data.dataset import ArrayDataset
from jaxcv.errors import ConfigError
from jaxcv.inference import Classifier
from jaxcv.ood import ensembles as ensembles_lib
from jaxcv.ood import evaluate as evaluate_lib
from jaxcv.ood import features as features_lib
from jaxcv.ood import metrics as metrics_lib
from jaxcv.ood.detectors import build_detectors, gram_powers_of
from jaxcv.ood.shifts import subsample
from jaxcv.ood.shifts.adversarial import AttackSettings, craft, quantize

log = logging.getLogger(__name__)

SHIFT_TYPES = ('novel', 'adversarial', 'synthetic', 'corruption', 'multiclass')
CONTROL = 'control'
DEFAULT_DETECTORS = ('msp,maxlogit,energy,entropy,doctor,logit_norm,klm,mds,mds_all,rmds,vim,'
                     'knn,gradnorm,react,dice,ash,scale,gram,odin')
ENSEMBLE_MEMBERS = 'msp,energy,mds,mds_all,vim,knn,gram'
NOVEL = 'tiny_imagenet_val@val,dtd10@all,mnist@test'
CORRUPTIONS = 'gaussian_noise,defocus_blur,contrast,jpeg'
RESULTS_FILE = 'broad_results.json'


@dataclasses.dataclass
class Split:
  """One scored split: images uint8 (a dataset) or float [0, 1] (crafted), its shift type."""
  name: str
  shift: str
  images: np.ndarray
  labels: Optional[np.ndarray]
  source: str


def _list(value: Union[str, Sequence]) -> list:
  """'a,b' or ['a', 'b'] -> ['a', 'b']; dataset options stay with their dataset
  ('synthetic:n=64,size=16@test,mnist' is two datasets), as --ood lists are split."""
  return evaluate_lib.split_datasets(value) if isinstance(value, str) else list(value)


def _id_splits(data_name: str, train_split: str, data_dir, image_size, fit_examples: int,
               val: int, ens: int, test: int, seed: int) -> dict[str, ArrayDataset]:
  train = subsample(registry.load_dataset(data_name, train_split, data_dir, image_size),
                    fit_examples, seed)
  pool = registry.load_dataset(data_name, 'test', data_dir, image_size)
  if val + ens >= len(pool):
    raise ConfigError(f'ID-val ({val}) + ID-ens ({ens}) leave no ID-test images of {len(pool)}')
  order = np.random.default_rng(seed).permutation(len(pool))
  test_end = len(pool) if not test else min(len(pool), val + ens + test)
  cut = lambda a, b: pool.subset(np.sort(order[a:b]))
  return {'id_train': train, 'id_val': cut(0, val), 'id_ens': cut(val, val + ens),
          'id_test': cut(val + ens, test_end)}


def build_splits(classifier, transfer, data_name: str, data_dir, image_size, *, novel, corruptions,
                 severities, attacks, synthetic, mosaics: bool, ood_examples: int,
                 attack_steps: int, seed: int, batch_size: int, cache_dir=None) -> list[Split]:
  """Every shift split (module docstring), `ood_examples` images each."""
  splits = []
  for spec in _list(novel):
    name, _, split = spec.partition('@')
    data = subsample(registry.load_dataset(name, split or 'test', data_dir), ood_examples, seed)
    splits.append(Split(name.partition(':')[0], 'novel', data.images, None, spec))
  base = f'n={ood_examples},seed={seed}'
  for kind in _list(corruptions):
    for severity in _list(severities):
      name = f'corrupt(kind={kind},severity={int(severity)},{base}):{data_name}'
      data = registry.load_dataset(name, 'test', data_dir, image_size)
      splits.append(Split(f'{kind}_s{int(severity)}', 'corruption', data.images, data.labels, name))
  if mosaics:
    for mixed in (True, False):
      name = f'mosaic(mixed={mixed},{base}):{data_name}'
      data = registry.load_dataset(name, 'test', data_dir, image_size)
      splits.append(Split('mosaic' if mixed else 'mosaic_mono', 'multiclass' if mixed else CONTROL,
                          data.images, data.labels, name))
  for spec in _list(synthetic):
    name, _, split = spec.partition('@')
    data = subsample(registry.load_dataset(name, split or 'test', data_dir), ood_examples, seed)
    label = name.partition(':')[0].partition('(')[0]  # 'generated', 'npz', ...
    splits.append(Split(f'synthetic_{label}', 'synthetic', data.images, None, spec))
  clean = subsample(registry.load_dataset(data_name, 'test', data_dir, image_size), ood_examples,
                    seed)
  for attack in _list(attacks):
    settings = AttackSettings(attack, steps=attack_steps)
    for where, model in (('white', classifier), ('transfer', transfer)):
      if model is None:
        continue
      images = _crafted(model, clean, settings, seed, batch_size, cache_dir)
      splits.append(Split(f'{attack}_{where}', 'adversarial', images, clean.labels,
                          f'{settings.name} crafted on {model.name}, float'))
  return splits


def _crafted(model, clean: ArrayDataset, settings: AttackSettings, seed: int, batch_size: int,
             cache_dir) -> np.ndarray:
  """craft(...), cached as float32 under the feature cache, keyed by the attacked weights, the
  attack and the clean images: every ID model's benchmark shares the transfer sets."""
  def build():
    t0 = time.perf_counter()
    images = craft(model, clean.images, clean.labels, settings, seed=seed, batch_size=batch_size)
    log.info('%s on %s: %d images in %.1f s', settings.name, model.name, len(images),
             time.perf_counter() - t0)
    return images

  key = {'weights': model.fingerprint, 'attack': dataclasses.asdict(settings), 'seed': seed,
         'batch_size': batch_size, 'images': cache.content_digest(clean.images),
         'labels': cache.content_digest(np.asarray(clean.labels))}
  path = cache.keyed_path(cache_dir, f'adversarial-{settings.attack}-{model.name}', key)
  return cache.cached_file(path, build, load=lambda p: np.load(p)['images'],
                           write=lambda x, tmp: np.savez(tmp, images=x),
                           what=f'{settings.name} on {model.name}')


def _features(classifier, split_name: str, images: np.ndarray, labels, image_shape, gram_powers,
              cache_dir, batch_size):
  if images.dtype == np.uint8:
    classes = [str(c) for c in range(classifier.head.kernel.shape[1])]
    labels = np.zeros(len(images), np.int32) if labels is None else labels
    data = ArrayDataset(images, labels, classes, ignore_index=-1)  # -1: a mixed mosaic.
    return features_lib.dataset_features(classifier, data, split_name, image_shape=image_shape,
                                         batch_size=batch_size, layers=True,
                                         gram_powers=gram_powers, cache_dir=cache_dir)
  return features_lib.extract(classifier, images, labels, image_shape=image_shape,
                              batch_size=batch_size, layers=True, gram_powers=gram_powers,
                              name=split_name)


def auroc(id_scores, ood_scores) -> float:
  return metrics_lib.ood_metrics(id_scores, ood_scores)['auroc']


def summarize(scores: dict[str, dict[str, np.ndarray]], shifts: dict[str, str]) -> dict:
  """{method: {'splits': {split: AUROC}, 'types': {type: mean}, 'overall', 'sanity'}} from
  scores[method][split] (ID-test as 'id_test', ID-val as 'id_val')."""
  out = {}
  for method, by_split in scores.items():
    per_split = {s: auroc(by_split['id_test'], by_split[s]) for s in shifts}
    types = {}
    for shift in SHIFT_TYPES:
      values = [v for s, v in per_split.items() if shifts[s] == shift]
      if values:
        types[shift] = float(np.mean(values))
    out[method] = {'splits': per_split, 'types': types,
                   'overall': float(np.mean(list(types.values()))) if types else None,
                   'worst_type': float(min(types.values())) if types else None,
                   'sanity': auroc(by_split['id_test'], by_split['id_val'])}
  return out


def run_benchmark(classifier: Union[str, Classifier], *, transfer_run: Optional[str] = None,
                  detectors: Union[str, Sequence[str]] = DEFAULT_DETECTORS,
                  ensemble_members: Union[str, Sequence[str]] = ENSEMBLE_MEMBERS,
                  ensembles: Union[str, Sequence[str]] = tuple(ensembles_lib.ENSEMBLES),
                  gmm_components: Union[str, Sequence[int]] = ensembles_lib.GMM_COMPONENTS,
                  novel: Union[str, Sequence[str]] = NOVEL,
                  corruptions: Union[str, Sequence[str]] = CORRUPTIONS,
                  severities: Union[str, Sequence[int]] = (3, 5),
                  attacks: Union[str, Sequence[str]] = ('pgd', 'fgsm'), attack_steps: int = 10,
                  synthetic: Union[str, Sequence[str]] = (), mosaics: bool = True,
                  ood_examples: int = 1000, fit_examples: int = 5000, id_val_examples: int = 1000,
                  id_ens_examples: int = 1000, id_test_examples: int = 2000,
                  data_dir: Optional[str] = None, batch_size: int = 256, seed: int = 0,
                  cache: bool = True, out_dir: Optional[str] = None) -> dict:
  """The BROAD benchmark of a classifier (a `jaxcv.inference.Classifier` with its run config, or
  a run's workdir) on its own ID dataset (module docstring); returns the results dict."""
  start = time.perf_counter()
  gmm_components = [int(k) for k in _list(gmm_components)]
  ensembles = _list(ensembles)
  dets = build_detectors(detectors)
  members = _list(ensemble_members)
  by_spec = {d.spec: d for d in dets}
  missing = [m for m in members if m not in by_spec]
  if missing:
    raise ConfigError(f'ensemble members {missing} are not among the detectors {list(by_spec)}')
  if isinstance(classifier, str):
    classifier = features_lib.load_classifier(classifier)
  transfer = features_lib.load_classifier(transfer_run) if transfer_run else None
  data_config = (classifier.config or {}).get('data') or {}
  data_name = data_config.get('name')
  data_dir = data_dir or data_config.get('data_dir') or None
  image_size = data_config.get('image_size')
  cache_dir = features_lib.default_cache_dir() if cache else None
  id_splits = _id_splits(data_name, data_config.get('train_split') or 'train', data_dir,
                         image_size, fit_examples, id_val_examples, id_ens_examples,
                         id_test_examples, seed)
  image_shape = id_splits['id_train'].image_shape
  shift_splits = build_splits(classifier, transfer, data_name, data_dir, image_size, novel=novel,
                              corruptions=corruptions, severities=severities, attacks=attacks,
                              synthetic=synthetic, mosaics=mosaics, ood_examples=ood_examples,
                              attack_steps=attack_steps, seed=seed, batch_size=batch_size,
                              cache_dir=cache_dir)
  build_seconds = time.perf_counter() - start
  if 'pgd_white' in {s.name for s in shift_splits}:
    pgd = next(s for s in shift_splits if s.name == 'pgd_white')
    shift_splits.append(Split('pgd_white_uint8', 'measurement', quantize(pgd.images), pgd.labels,
                              pgd.source.replace('float', 'rounded to uint8')))
  gram_powers = gram_powers_of(dets)
  feature_sets, images = {}, {}
  for key, data in id_splits.items():
    feature_sets[key] = _features(classifier, f'{data_name}:{key}[seed={seed}]', data.images,
                                  data.labels, image_shape, gram_powers, cache_dir, batch_size)
    images[key] = data.images
  for s in shift_splits:
    feature_sets[s.name] = _features(classifier, f'broad:{s.source}', s.images, s.labels,
                                     image_shape, gram_powers, cache_dir, batch_size)
    images[s.name] = s.images
  extract_seconds = time.perf_counter() - start - build_seconds

  scored = [k for k in feature_sets if k != 'id_train']
  scores, seconds = {}, {}
  for det in dets:
    t0 = time.perf_counter()
    if 'model' in det.requires:
      scores[det.spec] = {k: features_lib.image_scores(classifier, det.image_score_fn, images[k],
                                                       image_shape=image_shape,
                                                       batch_size=batch_size) for k in scored}
    else:
      det.fit(feature_sets['id_val' if det.fit_split == 'val' else 'id_train'])
      scores[det.spec] = {k: det.score(feature_sets[k]) for k in scored}
    seconds[det.spec] = round(time.perf_counter() - t0, 2)
  fitted_ensembles = {}
  for ens in ensembles_lib.build_ensembles(ensembles, seed, gmm_components):
    joint = lambda k: np.stack([scores[m][k] for m in members], 1)
    ens.fit(joint('id_ens'))
    scores[ens.name] = {k: ens.score(joint(k)) for k in scored}
    fitted_ensembles[ens.name] = ens

  shifts = {s.name: s.shift for s in shift_splits if s.shift != 'measurement'}
  summary = summarize(scores, shifts)
  accuracy = lambda k: metrics_lib.accuracy(feature_sets[k].logits, feature_sets[k].labels)
  quantized = {}
  if 'pgd_white_uint8' in feature_sets:
    quantized = {
        'accuracy_float': accuracy('pgd_white'), 'accuracy_uint8': accuracy('pgd_white_uint8'),
        'auroc_uint8': {m: auroc(scores[m]['id_test'], scores[m]['pgd_white_uint8'])
                        for m in scores}}
  results = {
      'classifier': classifier.name,
      'transfer_run': transfer.checkpoint if transfer else None, 'id_dataset': data_name,
      'seed': seed, 'metrics_unit': 'percent', 'shift_types': list(SHIFT_TYPES),
      'splits': {**{k: {'shift': 'id', 'examples': len(v), 'source': v.source}
                    for k, v in id_splits.items()},
                 **{s.name: {'shift': s.shift, 'examples': len(s.images), 'source': s.source,
                             'dtype': str(s.images.dtype)} for s in shift_splits}},
      'id_accuracy': accuracy('id_test'),
      'attack_accuracy': {s.name: accuracy(s.name) for s in shift_splits
                          if s.shift == 'adversarial'},
      'pgd_white_quantization': quantized,
      'detectors': list(by_spec), 'ensemble_members': members,
      'gmm_components': getattr(fitted_ensembles.get('gmm'), 'n_components', None),
      'gmm_bic': getattr(fitted_ensembles.get('gmm'), 'bic', None),
      'auroc': summary, 'seconds': {'build_splits': round(build_seconds, 1),
                                    'features': round(extract_seconds, 1), 'detectors': seconds,
                                    'total': round(time.perf_counter() - start, 1)},
  }
  if out_dir:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / RESULTS_FILE).write_text(json.dumps(results, indent=2))
    (out / 'broad_results.md').write_text(results_markdown(results))
  return results


def results_markdown(results: dict) -> str:
  """One run's AUROC tables."""
  shifts = {k: v['shift'] for k, v in results['splits'].items()
            if v['shift'] in SHIFT_TYPES + (CONTROL,)}
  values = {m: {k: [v] for k, v in flatten_method(r).items()} for m, r in results['auroc'].items()}
  return markdown_table(values, list(shifts), shifts,
                        f'BROAD-mini: {results["classifier"]}, seed {results["seed"]}')


def flatten_method(entry: dict) -> dict[str, float]:
  """One method's AUROCs as {column: value}: splits, 'type/<t>', 'overall', 'sanity'."""
  out = dict(entry['splits'])
  out.update({f'type/{t}': v for t, v in entry['types'].items()})
  out['overall'] = entry['overall']
  out['worst_type'] = entry['worst_type']
  out['sanity'] = entry['sanity']
  return out


def flat_metrics(results: dict) -> dict[str, float]:
  """The results as one flat dict (summary.json of a table row): 'auroc/<method>/<column>'."""
  out = {'id_accuracy': results['id_accuracy']}
  out.update({f'attack_accuracy/{k}': v for k, v in results['attack_accuracy'].items()})
  q = results['pgd_white_quantization']
  if q:
    out['pgd_white_uint8/accuracy'] = q['accuracy_uint8']
    out.update({f'pgd_white_uint8/auroc/{m}': v for m, v in q['auroc_uint8'].items()})
  for method, entry in results['auroc'].items():
    out.update({f'auroc/{method}/{k}': v for k, v in flatten_method(entry).items()})
  if results['gmm_components'] is not None:
    out['gmm_components'] = results['gmm_components']
  return out


def _cell(values: list[float]) -> str:
  values = [v for v in values if v is not None]
  if not values:
    return '-'
  if len(values) == 1:
    return f'{values[0]:.1f}'
  return f'{np.mean(values):.1f} ± {np.std(values, ddof=1):.1f}'


def markdown_table(values: dict[str, dict[str, list[float]]], splits: list[str],
                   shifts: dict[str, str], title: str) -> str:
  """AUROC tables (method x split; method x shift type, overall, worst type, sanity) from
  values[method][column] = one value per seed (mean ± sample std when several)."""
  types = [t for t in SHIFT_TYPES if any(shifts[s] == t for s in splits)]
  lines = [f'# {title}', '',
           'AUROC in percent (OpenOOD\'s, OOD positive; 50 = chance), ID-test against each split. '
           'Mean ± sample standard deviation over seeds where several. `mosaic_mono` (same-class '
           'mosaics) is the control and enters no average; the sanity column scores ID-val '
           'against ID-test and should be near 50.', '',
           '## Per shift type', '',
           '| method | ' + ' | '.join([*types, 'overall', 'worst type', 'sanity']) + ' |',
           '|---' * (len(types) + 4) + '|']
  for method, cols in values.items():
    cells = [_cell(cols.get(f'type/{t}', [])) for t in types]
    cells += [_cell(cols.get(k, [])) for k in ('overall', 'worst_type', 'sanity')]
    lines.append(f'| {method} | ' + ' | '.join(cells) + ' |')
  lines += ['', '## Per split', '', '| method | ' + ' | '.join(splits) + ' |',
            '|---' * (len(splits) + 1) + '|']
  for method, cols in values.items():
    lines.append(f'| {method} | ' + ' | '.join(_cell(cols.get(s, [])) for s in splits) + ' |')
  lines += ['', 'Shift types: ' + ', '.join(f'{s} = {shifts[s]}' for s in splits), '']
  return '\n'.join(lines)


def heatmap(values: dict[str, dict[str, list[float]]], columns: list[str], path: str,
            title: str) -> None:
  """A method x column heat map of mean AUROC (matplotlib object API, no global state)."""
  from matplotlib.figure import Figure  # pylint: disable=import-outside-toplevel
  methods = list(values)
  grid = np.array([[np.mean(values[m][c]) if values[m].get(c) else np.nan for c in columns]
                   for m in methods])
  fig = Figure(figsize=(0.55 * len(columns) + 2.5, 0.32 * len(methods) + 1.8))
  ax = fig.add_subplot()
  image = ax.imshow(grid, cmap='RdYlGn', vmin=0, vmax=100, aspect='auto')
  ax.set_xticks(range(len(columns)), [c.replace('type/', '') for c in columns], rotation=60,
                ha='right', fontsize=7)
  ax.set_yticks(range(len(methods)), methods, fontsize=7)
  for i in range(len(methods)):
    for j in range(len(columns)):
      if np.isfinite(grid[i, j]):
        ax.text(j, i, f'{grid[i, j]:.0f}', ha='center', va='center', fontsize=6)
  fig.colorbar(image, ax=ax, label='AUROC (%)')
  ax.set_title(title, fontsize=9)
  fig.tight_layout()
  fig.savefig(path, dpi=120)


def render_seeds(row_dirs: Sequence[str], out_dir: str, title: str = 'BROAD-mini') -> Optional[dict]:
  """Aggregates the broad_results.json of several runs (seeds; in each row folder or its `broad`
  evaluator folder) into out_dir/broad_table.md,
  broad_table.json (per method and column: the values per seed) and broad_auroc.png (heat map
  of the mean: methods x splits, shift types, overall). None when no run has results."""
  paths = [next((p for p in (Path(d) / RESULTS_FILE, Path(d) / 'broad' / RESULTS_FILE)
                 if p.is_file()), None) for d in row_dirs]
  runs = [json.loads(p.read_text()) for p in paths if p is not None]
  if not runs:
    return None
  shifts = {k: v['shift'] for k, v in runs[0]['splits'].items()
            if v['shift'] in SHIFT_TYPES + (CONTROL,)}
  values: dict[str, dict[str, list[float]]] = {}
  for r in runs:
    for method, entry in r['auroc'].items():
      for column, value in flatten_method(entry).items():
        values.setdefault(method, {}).setdefault(column, []).append(value)
  seeds = [r['seed'] for r in runs]
  models = [r['classifier'] for r in runs]
  full_title = (f'{title}: {len(runs)} ID model{"s" * (len(runs) > 1)} ({", ".join(models)}), '
                f'data seed{"s" * (len(set(seeds)) > 1)} {", ".join(map(str, sorted(set(seeds))))}')
  out = Path(out_dir)
  out.mkdir(parents=True, exist_ok=True)
  accuracy = [r['id_accuracy'] for r in runs]
  attack = {k: [r['attack_accuracy'][k] for r in runs] for k in runs[0]['attack_accuracy']}
  text = markdown_table(values, list(shifts), shifts, full_title)
  text += ('\nID-test accuracy: ' + _cell(accuracy) + ' %. Classifier accuracy on the attacked '
           'splits: ' + ', '.join(f'{k} {_cell(v)} %' for k, v in attack.items()) + '.\n')
  (out / 'broad_table.md').write_text(text)
  (out / 'broad_table.json').write_text(json.dumps(
      {'title': full_title, 'models': models, 'seeds': seeds, 'shifts': shifts, 'auroc': values,
       'id_accuracy': accuracy, 'attack_accuracy': attack,
       'gmm_components': [r['gmm_components'] for r in runs]}, indent=2))
  types = [f'type/{t}' for t in SHIFT_TYPES if any(v == t for v in shifts.values())]
  heatmap(values, [*shifts, *types, 'overall', 'sanity'], str(out / 'broad_auroc.png'),
          full_title)
  return values
