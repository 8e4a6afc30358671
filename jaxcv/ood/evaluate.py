"""One-call OOD evaluation of a trained jaxcv classifier, as OpenOOD's Evaluator does it.

    python -m jaxcv.ood.evaluate --checkpoint runs/resnet18_cifar10 --id cifar10 \\
        --ood tiny_imagenet_val,dtd10,mnist --detectors msp,energy,mds,vim,knn --out runs/ood

The command is a thin wrapper: it runs the `ood` evaluator (jaxcv/evaluators/ood.py) on the run
through the single loop, as an evaluation-only run (total_steps=0, init_checkpoint=the run).
`evaluate_classifier` is the core, `evaluate` its function form for a saved run.

1. One feature pass (features.py) per split, cached: ID-train (the fitting set, optionally a
   random subset), ID-val, ID-test and every OOD set; OOD images are resized to the ID image
   size and converted to the model's channel count inside the pass.
2. ID-val is `id_val_split` when the ID dataset has one, else `id_val_examples` random images
   carved out of the ID test split (ID-test is the rest), since CIFAR has no validation split.
3. Each detector is fitted on ID-train, or on ID-val where OpenOOD fits it there (ReAct, KLM:
   `fit_split`), then scores every split. Detectors that need input gradients (ODIN) take an
   extra pass over the images.
4. Metrics (metrics.py, percent, OOD positive) of ID-test against each OOD set, their mean over
   OOD sets, and the sanity row ID-val against ID-test, which should be close to AUROC 50.

Writes ood_results.json, ood_results.md (tables) and ood_scores.npz (every detector's scores
of every split, keyed 'DETECTOR|SPLIT', for ensembles such as BROAD's): the evaluator as its
artefacts (<workdir>/<evaluator name>/), `evaluate` under `out_dir`.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np

from jaxcv import specs
from jaxcv.data import registry
from jaxcv.data.dataset import ArrayDataset
from jaxcv.errors import ConfigError, UserError
from jaxcv.inference import Classifier
from jaxcv.ood import features as features_lib
from jaxcv.ood import metrics as metrics_lib
from jaxcv.ood.detectors import build_detectors, gram_powers_of
from jaxcv.ood.featureset import FeatureSet

log = logging.getLogger(__name__)

DEFAULT_DETECTORS = 'msp,maxlogit,energy,mds,vim,knn'
SANITY = 'id_val_vs_id_test'


def default_split(name: str) -> str:
  """The split an OOD dataset is evaluated on when none is named: 'test', else 'val', else
  'all' for the registry's datasets; 'all' for folder:/tar:/npz: forms, else 'test'."""
  spec = registry.DATASETS.get(name)
  if spec is not None:
    return next((s for s in ('test', 'val', 'all') if s in spec.splits), spec.splits[0])
  return 'all' if name.partition(':')[0] in ('folder', 'tar', 'npz') else 'test'


def parse_dataset(spec: str) -> tuple[str, str]:
  """'mnist' -> ('mnist', 'test'); 'mnist@train' -> ('mnist', 'train')."""
  name, at, split = spec.strip().rpartition('@')
  if not at:
    name, split = split, default_split(split)
  if not name or not split:
    raise ConfigError(f'dataset {spec!r}: expected NAME or NAME@SPLIT')
  return name, split


def split_datasets(text: str) -> list[str]:
  """'mnist,corrupt(kind=gaussian_noise,severity=5):cifar10' -> ['mnist', 'corrupt(...):cifar10']:
  split at top-level commas only (jaxcv/specs.py); a part of the form key=value continues the previous
  dataset's options ('synthetic:n=64,size=16' stays one dataset)."""
  out = []
  for part in specs.split(text, ',', 'dataset list'):
    if out and re.fullmatch(r'\w+=[^,:@]*(@\w+)?', part):
      out[-1] += ',' + part
    else:
      out.append(part)
  return out


def _load(name: str, split: str, data_dir, image_size, count: Optional[int],
          seed: int) -> tuple[ArrayDataset, str]:
  """The split, reduced to `count` random examples (seeded, original order) when it has more,
  and its name for the feature cache and the tables ('mnist:test', 'mnist:test[1000,seed=0]')."""
  data = registry.load_dataset(name, split, data_dir, image_size)
  if not count or count >= len(data):
    return data, f'{name}:{split}'
  keep = np.sort(np.random.default_rng(seed).permutation(len(data))[:count])
  return data.subset(keep), f'{name}:{split}[{count},seed={seed}]'


def _carve_val(test: ArrayDataset, count: int, seed: int) -> tuple[ArrayDataset, ArrayDataset]:
  if not 0 < count < len(test):
    raise ConfigError(f'id_val_examples={count} must be in [1, {len(test) - 1}] to carve ID-val '
                      f'out of the {len(test)} ID test images')
  order = np.random.default_rng(seed).permutation(len(test))
  return test.subset(np.sort(order[:count])), test.subset(np.sort(order[count:]))


def _id_splits(name: str, train_split: str, test_split: str, val_split: Optional[str],
               val_examples: int, fit_examples: Optional[int], data_dir, image_size,
               seed: int) -> dict[str, tuple[ArrayDataset, str]]:
  """{'id_train', 'id_val', 'id_test'} -> (data, name); ID-val carved out of the test split
  when no `val_split` is named."""
  splits = {'id_train': _load(name, train_split, data_dir, image_size, fit_examples, seed)}
  test, test_name = _load(name, test_split, data_dir, image_size, None, seed)
  if val_split:
    splits['id_val'] = _load(name, val_split, data_dir, image_size, None, seed)
    splits['id_test'] = (test, test_name)
  else:
    val, test = _carve_val(test, val_examples, seed)
    splits['id_val'] = (val, f'{test_name}[val {val_examples},seed={seed}]')
    splits['id_test'] = (test, f'{test_name}[rest,seed={seed}]')
  return splits


def evaluate(checkpoint: str, id_dataset: Optional[str] = None,
             ood_datasets: Union[str, Sequence[str]] = (),
             detectors: Union[str, Sequence[str]] = DEFAULT_DETECTORS, *,
             use_ema: Optional[bool] = None, out_dir: Optional[str] = None, **options) -> dict:
  """`evaluate_classifier` of the run saved under `checkpoint` (a workdir, its checkpoints
  folder or a step folder; `use_ema` None/True/False: weights 'auto'/'ema'/'plain'), the ID
  dataset, data_dir, image size and train split defaulting to the run's; writes
  ood_results.json / .md and ood_scores.npz under `out_dir` when given. Returns the results."""
  build_detectors(detectors)  # Bad names fail before the run is read.
  classifier = features_lib.load_classifier(checkpoint, use_ema)
  data = classifier.config.data
  options.setdefault('data_dir', data.get('data_dir') or None)
  options.setdefault('image_size', data.get('image_size'))
  options.setdefault('train_split', data.get('train_split') or 'train')
  results, scores = evaluate_classifier(classifier, id_dataset or data.get('name'), ood_datasets,
                                        detectors, **options)
  if out_dir:
    write_results(results, scores, out_dir)
  return results


def evaluate_classifier(classifier: Classifier, id_dataset: str,
                        ood_datasets: Union[str, Sequence[str]] = (),
                        detectors: Union[str, Sequence[str]] = DEFAULT_DETECTORS, *,
                        data_dir: Optional[str] = None, image_size: Optional[int] = None,
                        train_split: str = 'train', id_test_split: str = 'test',
                        id_val_split: Optional[str] = None, id_val_examples: int = 1000,
                        fit_examples: Optional[int] = None, ood_examples: Optional[int] = None,
                        batch_size: int = 256, layers: bool = False,
                        cache: Union[bool, str] = True,
                        seed: int = 0) -> tuple[dict, dict[str, np.ndarray]]:
  """Evaluates `detectors` on `classifier` (module docstring): (results, scores by
  'DETECTOR|SPLIT'). The core of the `ood` evaluator and of `evaluate`.

  Args:
    classifier: a `jaxcv.inference.Classifier` (e.g. `load_run(run).classifier()`).
    id_dataset: the in-distribution dataset, read at `image_size` (the run's data.image_size).
    ood_datasets: 'NAME' or 'NAME@SPLIT' each (a comma-separated string or a list).
    detectors: detector specs (`jaxcv.ood.detectors.build_detector`), a string or a list.
    data_dir: where datasets are; default $JAXCV_DATA_DIR.
    train_split: the ID split detectors are fitted on.
    id_test_split / id_val_split: ID splits; with no id_val_split, `id_val_examples` random
      test images become ID-val.
    fit_examples: fit on this many random ID-train images (default: all).
    ood_examples: evaluate at most this many random images of each OOD set (default: all).
    layers: also extract per-layer pooled features (for `mds(layer=...)`).
    cache: True: cache features under $JAXCV_CACHE_DIR/ood_features; a folder; False: none.
  """
  dets = build_detectors(detectors)  # Bad names fail before any data is read.
  ood_specs = split_datasets(ood_datasets) if isinstance(ood_datasets, str) else list(ood_datasets)
  ood_parsed = [parse_dataset(s) for s in ood_specs]
  if not id_dataset:
    raise ConfigError('no ID dataset given and none in the run config')
  if cache is True:
    cache_dir = features_lib.default_cache_dir()
  else:
    cache_dir = cache or None

  start = time.perf_counter()
  splits = _id_splits(id_dataset, train_split, id_test_split, id_val_split, id_val_examples,
                      fit_examples, data_dir, image_size, seed)
  train = splits['id_train'][0]
  image_shape = train.image_shape
  num_classes = classifier.head.kernel.shape[1]
  if int(np.max(train.labels)) >= num_classes:
    raise ConfigError(f'ID dataset {id_dataset} has labels up to {int(np.max(train.labels))} but '
                      f'the classifier has {num_classes} classes')
  ood_labels = []
  for name, split in ood_parsed:
    label = name if split == default_split(name) else f'{name}@{split}'
    if label in splits:
      raise ConfigError(f'OOD dataset {label} is listed twice')
    # OOD images keep their own size here; the feature pass resizes them to `image_shape`.
    splits[label] = _load(name, split, data_dir, None, ood_examples, seed)
    ood_labels.append(label)

  # Detectors that read per-layer features (mds_all, gram) get them without --layers.
  layers = layers or any('layers' in d.requires and not gram_powers_of([d]) for d in dets)
  feature_sets = {
      key: features_lib.dataset_features(classifier, data, name, image_shape=image_shape,
                                         batch_size=batch_size, layers=layers,
                                         gram_powers=gram_powers_of(dets), cache_dir=cache_dir)
      for key, (data, name) in splits.items()}
  extraction_seconds = time.perf_counter() - start

  results = {
      'classifier': classifier.name, 'checkpoint': classifier.checkpoint or None,
      'step': classifier.step, 'use_ema': classifier.use_ema, 'id_dataset': id_dataset, 'image_shape': list(image_shape), 'metrics_unit': 'percent',
      'splits': {key: {'name': name, 'examples': len(data)} for key, (data, name) in
                 splits.items()},
      'ood_datasets': ood_labels,
      'id_accuracy': metrics_lib.accuracy(feature_sets['id_test'].logits,
                                          feature_sets['id_test'].labels),
      'extraction_seconds': round(extraction_seconds, 2),
      'detectors': {},
  }
  all_scores = {}
  for det in dets:
    t0 = time.perf_counter()
    scores = _score_all(det, classifier, feature_sets, splits, image_shape, batch_size)
    all_scores.update({f'{det.spec}|{key}': s for key, s in scores.items()})
    entry = {'fit_split': det.fit_split if det.fit_requires else None,
             **_metrics_of(scores, ood_labels), 'seconds': round(time.perf_counter() - t0, 2)}
    results['detectors'][det.spec] = entry
    log.info('%s: %s', det.spec, {k: round(v['auroc'], 2) for k, v in entry['ood'].items()})
  return results, all_scores


def _score_all(det, classifier, feature_sets: dict[str, FeatureSet], splits, image_shape,
               batch_size) -> dict[str, np.ndarray]:
  """The detector's scores of every split but ID-train (only fitted on, never scored: KNN would
  find each example itself)."""
  keys = [key for key in splits if key != 'id_train']
  if 'model' in det.requires:
    return {key: features_lib.image_scores(classifier, det.image_score_fn, splits[key][0].images,
                                           image_shape=image_shape, batch_size=batch_size)
            for key in keys}
  if det.fit_requires:
    det.fit(feature_sets['id_val' if det.fit_split == 'val' else 'id_train'])
  return {key: det.score(feature_sets[key]) for key in keys}


def _metrics_of(scores: dict[str, np.ndarray], ood_labels: list[str]) -> dict:
  """ID-test against each OOD set, their mean, and ID-test against ID-val (the sanity row)."""
  per_set = {label: metrics_lib.ood_metrics(scores['id_test'], scores[label])
             for label in ood_labels}
  return {'ood': per_set, 'mean': metrics_lib.mean_metrics(per_set) if per_set else None,
          SANITY: metrics_lib.ood_metrics(scores['id_test'], scores['id_val'])}


# ------------------------------------------------------------------------------------- outputs

def _fmt(value: Optional[float]) -> str:
  return '-' if value is None else f'{value:.2f}'


def markdown(results: dict) -> str:
  """The results as markdown: one table per metric (detector x OOD set, their mean and the
  ID-val vs ID-test sanity column), then the setup."""
  ood = results['ood_datasets']
  splits = results['splits']
  lines = [f'# OOD evaluation: {results["classifier"]}', '',
           f'ID: {results["id_dataset"]}, ID-test accuracy {results["id_accuracy"]:.2f} %. '
           'Metrics in percent, as OpenOOD computes them (OOD is the positive class). '
           f'The last column scores ID-val against ID-test: it should be near 50 for AUROC.', '']
  for metric in metrics_lib.METRICS:
    lines += [f'## {metrics_lib.METRIC_NAMES[metric]}', '',
              '| detector | ' + ' | '.join([*ood, 'mean', 'ID-val vs ID-test']) + ' |',
              '|---' * (len(ood) + 3) + '|']
    for spec, r in results['detectors'].items():
      row = [r['ood'][o][metric] for o in ood]
      row += [r['mean'][metric] if r['mean'] else None, r[SANITY][metric]]
      lines.append(f'| {spec} | ' + ' | '.join(_fmt(v) for v in row) + ' |')
    lines.append('')
  lines += ['## Setup', '', '| split | data | examples |', '|---|---|---|']
  lines += [f'| {key} | {s["name"]} | {s["examples"]} |' for key, s in splits.items()]
  fitted = {spec: r['fit_split'] for spec, r in results['detectors'].items() if r['fit_split']}
  lines += ['', 'Fitted on: ' + (', '.join(f'{s} on ID-{f}' for s, f in fitted.items())
                                 or 'nothing (all detectors stateless)') + '.', '']
  return '\n'.join(lines)


def write_results(results: dict, scores: dict[str, np.ndarray], out_dir: str) -> None:
  out = Path(out_dir)
  out.mkdir(parents=True, exist_ok=True)
  with open(out / 'ood_results.json', 'w') as f:
    json.dump(results, f, indent=2)
  (out / 'ood_results.md').write_text(markdown(results))
  np.savez(out / 'ood_scores.npz', **scores)
  log.info('wrote %s', out / 'ood_results.md')


def main(argv=None) -> int:
  """Builds the `ood` evaluator's evaluation-only config of the run and runs it through the
  single loop (jaxcv.train.run); results under <out>/ood/."""
  from jaxcv.main import ArgumentParser, setup_logging  # pylint: disable=import-outside-toplevel
  parser = ArgumentParser(prog='python -m jaxcv.ood.evaluate',
                          description=__doc__.splitlines()[0])
  parser.add_argument('--checkpoint', required=True, help="a jaxcv run's workdir (or a step)")
  parser.add_argument('--id', dest='id_dataset', default='',
                      help="ID dataset (default: the run's)")
  parser.add_argument('--ood', default='',
                      help="comma-separated NAME or NAME@SPLIT (nested specs allowed, e.g. "
                           "'mnist,corrupt(kind=gaussian_noise,severity=5):cifar10')")
  parser.add_argument('--detectors', default=DEFAULT_DETECTORS,
                      help="comma-separated specs, e.g. 'msp,energy(temperature=2),knn(k=50)'")
  parser.add_argument('--out', default=None,
                      help='workdir of the evaluation (default <checkpoint>/ood_eval); the '
                           'tables and scores go to <out>/ood/')
  parser.add_argument('--data_dir', '--data-dir', default=None)
  parser.add_argument('--id_test_split', '--id-test-split', default='test')
  parser.add_argument('--id_val_split', '--id-val-split', default='')
  parser.add_argument('--id_val_examples', '--id-val-examples', type=int, default=1000)
  parser.add_argument('--fit_examples', '--fit-examples', type=int, default=0)
  parser.add_argument('--ood_examples', '--ood-examples', type=int, default=0)
  parser.add_argument('--batch_size', '--batch-size', type=int, default=256)
  parser.add_argument('--ema', action='store_true',
                      help='evaluate the EMA weights (default: the trained ones)')
  parser.add_argument('--layers', action='store_true', help='extract per-layer features too')
  parser.add_argument('--cache_dir', '--cache-dir', default='',
                      help='feature cache folder (default $JAXCV_CACHE_DIR/ood_features)')
  parser.add_argument('--no_cache', '--no-cache', action='store_true')
  parser.add_argument('--seed', type=int, default=0)
  args = parser.parse_args(argv)
  setup_logging()
  from jaxcv import train  # pylint: disable=import-outside-toplevel
  from jaxcv.evaluators import ood  # pylint: disable=import-outside-toplevel
  out = args.out or str(Path(args.checkpoint) / 'ood_eval')
  try:
    config = ood.evaluation_config(
        args.checkpoint, datasets=args.ood, detectors=args.detectors, id_dataset=args.id_dataset,
        id_test_split=args.id_test_split, id_val_split=args.id_val_split,
        id_val_examples=args.id_val_examples, fit_examples=args.fit_examples,
        ood_examples=args.ood_examples, batch_size=args.batch_size, layers=args.layers,
        cache=not args.no_cache, cache_dir=args.cache_dir, seed=args.seed,
        weights='ema' if args.ema else 'plain')
    if args.data_dir:
      config.data.data_dir = args.data_dir
    train.run(config, out)
  except UserError as e:
    print(f'error: {e}', file=sys.stderr)
    return 2
  print((Path(out) / 'ood' / 'ood_results.md').read_text())
  return 0


if __name__ == '__main__':
  sys.exit(main())
