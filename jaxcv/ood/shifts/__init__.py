"""BROAD's distribution shifts as derived datasets (jaxcv/data/registry.py), usable wherever a
dataset name is (configs, `python -m jaxcv.ood.evaluate --ood ...`, the BROAD table):

  corrupt(kind=gaussian_noise,severity=5):cifar10    CIFAR-10-C-style corruption (corruptions.py):
                                                      gaussian_noise, defocus_blur, contrast, jpeg;
                                                      severity 1-5; seed (noise only)
  mosaic:cifar10, mosaic(mixed=False):cifar10        2x2 mosaics of >= 2 classes (label -1), or of
                                                      one class (the control); n, seed, min_classes
  adversarial(attack=pgd,run=runs/x):cifar10         FGSM / PGD / APGD-CE at L-inf eps/255 on the
                                                      classifier of run `run`; eps, steps, step_size,
                                                      n, seed. Stored as uint8: rounded to 1/255
                                                      steps (adversarial.py; the BROAD benchmark
                                                      scores the float images instead)
  generated(run=runs/gen):cifar10                    class-conditional samples of a jaxcv
                                                      diffusion run (generated.py): per_class,
                                                      sampler, steps, guidance (0: none), seed;
                                                      resized to the base's image size

Each transforms the requested split of its base dataset (n > 0: a seeded random subset of n
images first) and is cached like decoded archives, keyed by the options and the base content
(and the attacked checkpoint and step).
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Callable, Optional

import numpy as np

from jaxcv.data import cache, registry
from jaxcv.data.dataset import ArrayDataset
from jaxcv.errors import ConfigError

log = logging.getLogger(__name__)

KINDS = ('corrupt', 'mosaic', 'adversarial', 'generated')
_OPTIONS = {
    'corrupt': {'kind': 'gaussian_noise', 'severity': 3, 'seed': 0, 'n': 0},
    'mosaic': {'mixed': True, 'min_classes': 2, 'seed': 0, 'n': 0},
    'adversarial': {'attack': 'pgd', 'run': '', 'eps': 8.0, 'steps': 10, 'step_size': 2.0,
                    'seed': 0, 'n': 0, 'batch_size': 256},
    'generated': {'run': '', 'per_class': 100, 'sampler': 'ddim', 'steps': 50, 'guidance': 0.0,
                  'seed': 0, 'batch_size': 250},
}


def subsample(base: ArrayDataset, n: int, seed: int) -> ArrayDataset:
  """n seeded random examples of `base` in their original order (all when n is 0 or >= len)."""
  if n < 0:
    raise ConfigError(f'n must be >= 0 (0 = all), got {n}')
  if not n or n >= len(base):
    return base
  return base.subset(np.sort(np.random.default_rng(seed).permutation(len(base))[:n]))


def _cached(label: str, params: dict, base: ArrayDataset,
            build: Callable[[], ArrayDataset]) -> ArrayDataset:
  key = {'params': params, 'base': cache.content_digest(base.images),
         'labels': cache.content_digest(np.asarray(base.labels))}
  path = cache.keyed_path(cache.cache_dir(), label, key)
  return cache.cached_file(path, build, load=cache.load, write=cache.write_dataset, what=label)


def _corrupted(base: ArrayDataset, kind: str, severity: int, seed: int) -> ArrayDataset:
  from jaxcv.ood.shifts import corruptions  # pylint: disable=import-outside-toplevel
  images = corruptions.corrupt(base.images, kind, severity, seed)
  return dataclasses.replace(base, images=images,
                             source=f'corrupt({kind},severity={severity}) of {base.source}')


def _mosaics(base: ArrayDataset, mixed: bool, min_classes: int, seed: int,
             n: int) -> ArrayDataset:
  from jaxcv.ood.shifts import mosaic  # pylint: disable=import-outside-toplevel
  images, labels, _ = mosaic.mosaics(base.images, base.labels, n or len(base), mixed,
                                     min_classes, seed)
  what = 'mixed-class' if mixed else 'same-class'
  # Mixed mosaics carry label -1 (several classes, as CoComageNet's): marked as ignored.
  return ArrayDataset(images, labels, base.class_names,
                      ignore_index=mosaic.MIXED_LABEL if mixed else None,
                      source=f'2x2 {what} mosaics of {base.source}')


def _adversarial(base: ArrayDataset, classifier, params: dict) -> ArrayDataset:
  from jaxcv.ood.shifts import adversarial  # pylint: disable=import-outside-toplevel
  if (np.asarray(base.labels) < 0).any():
    raise ConfigError('adversarial(...) attacks the true class: its base needs a class label per '
                      'image (not mixed mosaics)')
  settings = adversarial.AttackSettings(params['attack'], params['eps'], params['steps'],
                                        params['step_size'])
  crafted = adversarial.craft(classifier, base.images, base.labels, settings,
                              seed=params['seed'], batch_size=params['batch_size'])
  log.info('adversarial: %s of %d images on %s', settings.name, len(crafted), classifier.name)
  return dataclasses.replace(base, images=adversarial.quantize(crafted),
                             source=f'{settings.name} on {classifier.name}, rounded to uint8, of '
                                    f'{base.source}')


def _generated(base: ArrayDataset, params: dict, split: str) -> ArrayDataset:
  from jaxcv import inference  # pylint: disable=import-outside-toplevel
  from jaxcv.ood.shifts import generated  # pylint: disable=import-outside-toplevel
  if not params['run']:
    raise ConfigError('generated(...) needs run=PATH: a class-conditional diffusion run')
  run = inference.load_run(params['run'])
  # The key names the exact weights sampled; the base only lends its classes and image size.
  key = {**params, 'run': str(run.run_dir), 'step': run.step, 'ema': run.used_ema,
         'classes': list(base.class_names), 'size': list(base.images.shape[1:])}
  return _cached(f'generated-{split}', key, base.subset(np.arange(1)),
                 lambda: generated.generated(base, run, params))


def load_derived(kind: str, options: Optional[str], base: ArrayDataset,
                 split: str) -> ArrayDataset:
  """The data layer's hook: dataset `kind(options):BASE` for `split`, BASE's split loaded."""
  params = registry.parse_derived_options(kind, options, _OPTIONS[kind])
  if np.asarray(base.labels).ndim != 1:
    raise ConfigError(f'{kind} needs a classification dataset (one label per image)')
  if kind == 'generated':
    return _generated(base, params, split)
  base = subsample(base, params['n'] if kind != 'mosaic' else 0, params['seed'])
  if kind == 'corrupt':
    args = (params['kind'], params['severity'], params['seed'])
    return _cached(f'corrupt-{params["kind"]}-{params["severity"]}-{split}', params, base,
                   lambda: _corrupted(base, *args))
  if kind == 'mosaic':
    return _cached(f'mosaic-{split}', params, base,
                   lambda: _mosaics(base, params['mixed'], params['min_classes'], params['seed'],
                                    params['n']))
  if not params['run']:
    raise ConfigError('adversarial(...) needs run=PATH: the run whose classifier is attacked')
  from jaxcv.ood import features as features_lib  # pylint: disable=import-outside-toplevel
  classifier = features_lib.load_classifier(params['run'])
  # The key names the exact weights attacked.
  key = {**params, 'run': classifier.checkpoint, 'step': classifier.step,
         'ema': classifier.use_ema}
  return _cached(f'adversarial-{params["attack"]}-{split}', key, base,
                 lambda: _adversarial(base, classifier, params))
