"""Feature visualisation of the evaluated classifier (jaxcv/featviz, paper 5: MACO), as an
evaluator: every parameterisation visualises the same targets, then the paper's metrics.

Config keys (`config.evals.<name>`, type 'featviz'):
  parameterizations  comma-separated, of maco, fourier, pixel, mag_phase (default: all four)
  objective          'logit' (default), 'channel:LAYER', 'neuron:LAYER' (jaxcv/featviz/objectives)
  targets            comma-separated indices (default: every class for 'logit', else required)
  steps              optimisation steps (default 256, as the paper)
  canvas             square canvas side (default 0: the model's input size)
  num_crops, crop_scale_start, crop_scale_end, scale_std, min_scale, center_std, jitter, noise
                     the transforms (jaxcv/featviz/transforms.py; defaults: Xplique's)
  decay_power        Lucid's Fourier decay d (default 1.0)
  magnitude          a .npy magnitude spectrum; empty (default): computed from
                     `magnitude_examples` (10000) images of magnitude_dataset (default
                     config.data.name) : magnitude_split (default 'train')
  reference_dataset, reference_split, reference_examples
                     real images for plausibility, the FID proxy and the spectrum (default
                     config.data.name : 'test', 2000, evenly spaced)
  transfer_runs      comma-separated workdirs of other classifiers (transferability)
  judge_run          workdir of an independent classifier: the FID/KID proxy's feature space
  seed               default 0

Yields '<parameterisation>/<metric>' for objective, logit, prob, top1, transfer, plausibility,
fid_proxy, kid_proxy, spectrum_dist, hf_ratio, seconds (those that apply). Artefacts under
`<workdir>/<name>/`: featviz.json (metrics, settings, spectra), grid.png (a row per
parameterisation), alpha.png (the same with MACO's transparency maps), spectra.png,
magnitude.npy, visualizations.npz (images and α maps).
"""

from __future__ import annotations

import logging
from typing import Iterator

import jax
import ml_collections
import numpy as np

from jaxcv import inference
from jaxcv.data.registry import load_dataset
from jaxcv.errors import ConfigError
from jaxcv.evaluators.base import register
from jaxcv.featviz import objectives, parameterizations, spectrum, study, transforms

log = logging.getLogger(__name__)

DEFAULTS = dict(parameterizations=','.join(parameterizations.PARAMETERIZATIONS),
                objective='logit', targets='', steps=256, canvas=0, num_crops=8,
                crop_scale_start=0.5, crop_scale_end=0.05, scale_std=0.05, min_scale=0.05,
                center_std=0.15, jitter=0.0, noise=0.08, decay_power=1.0, magnitude='',
                magnitude_dataset='', magnitude_split='train', magnitude_examples=10000,
                reference_dataset='', reference_split='test', reference_examples=2000,
                transfer_runs='', judge_run='', seed=0)


def _names(text: str) -> list[str]:
  return [item.strip() for item in str(text or '').split(',') if item.strip()]


def _evenly_spaced(data, count: int):
  if count and count < len(data):
    return data.subset(np.linspace(0, len(data) - 1, count).astype(int))
  return data


def settings_from(c: dict) -> study.Settings:
  names = _names(c['parameterizations'])
  for name in names:
    if name not in parameterizations.PARAMETERIZATIONS:
      raise ConfigError(f'featviz parameterizations: unknown {name!r}; known: '
                        f'{", ".join(parameterizations.PARAMETERIZATIONS)}')
  objectives.parse(c['objective'])
  schedule = transforms.CropSchedule(
      num_crops=int(c['num_crops']), crop_scale=(float(c['crop_scale_start']),
                                                 float(c['crop_scale_end'])),
      scale_std=float(c['scale_std']), min_scale=float(c['min_scale']),
      center_std=float(c['center_std']), jitter=float(c['jitter']), noise=float(c['noise']))
  return study.Settings(parameterizations=tuple(names), objective=c['objective'],
                        steps=int(c['steps']), canvas=int(c['canvas']), schedule=schedule,
                        decay_power=float(c['decay_power']), seed=int(c['seed']))


@register('featviz')
class FeatvizEvaluator:

  def __init__(self, eval_config, config, task, mesh, artefacts=None):
    del mesh  # Runs on the default device.
    c = {**DEFAULTS, **eval_config.to_dict()}
    unknown = sorted(set(c) - set(DEFAULTS) - {'type'})
    if unknown:
      raise ConfigError(f'unknown featviz evaluator settings {unknown}; known: {sorted(DEFAULTS)}')
    self.settings = settings_from(c)
    self.task, self.config, self.artefacts = task, config, artefacts
    num_classes = int(task.info.num_classes)
    if c['targets'] != '':
      self.targets = np.array([int(t) for t in _names(c['targets'])], np.int32)
    elif self.settings.objective == 'logit':
      self.targets = np.arange(num_classes, dtype=np.int32)
    else:
      raise ConfigError(f"featviz objective {self.settings.objective!r} needs targets "
                        "(channel indices), e.g. targets='0,1,2'")
    self.class_names = list(task.info.class_names) or [str(i) for i in range(num_classes)]
    data_dir, size = config.data.data_dir, config.data.image_size
    dataset = c['reference_dataset'] or config.data.name
    self.reference = study.Reference(
        **_arrays(_evenly_spaced(load_dataset(dataset, c['reference_split'], data_dir, size),
                                 int(c['reference_examples']))))
    if c['magnitude']:
      self.magnitude = spectrum.load_magnitude(c['magnitude'])
    else:
      source = _evenly_spaced(load_dataset(c['magnitude_dataset'] or config.data.name,
                                           c['magnitude_split'], data_dir, size),
                              int(c['magnitude_examples']))
      self.magnitude = spectrum.compute_magnitude(source.images)
    self.transfer = [inference.load_run(run).classifier() for run in _names(c['transfer_runs'])]
    self.judge = inference.load_run(c['judge_run']).classifier() if c['judge_run'] else None
    self.judge_features = (None if self.judge is None
                           else study.judge_features(self.judge, self.reference))

  def run(self, variables) -> Iterator[tuple[str, float]]:
    model, plain = self.task.export_classifier(variables)
    name = (self.config.init_checkpoint or '').rstrip('/').split('/')[-1] or self.config.model.name
    classifier = inference.Classifier(model, jax.device_get(plain), name=name, config=self.config)
    result = study.run_study(classifier, self.targets, self.settings, magnitude=self.magnitude,
                             reference=self.reference, transfer=self.transfer, judge=self.judge,
                             judge_reference_features=self.judge_features)
    if self.artefacts is not None and self.artefacts.enabled:
      self.write(result, classifier.name)
    for param, values in result.metrics.items():
      for metric, value in values.items():
        yield f'{param}/{metric}', float(value)

  def write(self, result: study.StudyResult, model_name: str) -> None:
    from jaxcv.featviz import plots  # pylint: disable=import-outside-toplevel  (matplotlib)
    titles = [self.class_names[t] if self.settings.objective == 'logit' else str(t)
              for t in self.targets]
    images = {p: v.images for p, v in result.visualizations.items()}
    alphas = {p: v.alpha for p, v in result.visualizations.items()}
    self.artefacts.figure('grid.png', plots.grid_figure(images, titles))
    self.artefacts.figure('alpha.png', plots.grid_figure(images, titles, alphas=alphas))
    if result.spectra:
      self.artefacts.figure('spectra.png', plots.spectra_figure(
          result.spectra, result.reference_power, reference_label=f'data ({model_name})'))
    np.save(self.artefacts.path('magnitude.npy'), self.magnitude)
    self.artefacts.arrays('visualizations.npz', targets=self.targets,
                          **{f'{p}_images': v for p, v in images.items()},
                          **{f'{p}_alpha': v for p, v in alphas.items()})
    self.artefacts.json('featviz.json', {
        'model': model_name, 'targets': self.targets.tolist(), 'target_names': titles,
        'settings': {**{k: v for k, v in vars(self.settings).items() if k != 'schedule'},
                     'schedule': vars(self.settings.schedule)},
        'metrics': result.metrics,
        'spectra': {p: s.tolist() for p, s in result.spectra.items()},
        'reference_spectrum': None if result.reference_power is None
                              else result.reference_power.tolist(),
        'transfer_models': [c.name for c in self.transfer],
        'judge': None if self.judge is None else self.judge.name})


def _arrays(data) -> dict:
  return {'images': data.images, 'labels': np.asarray(data.labels)}


def evaluation_config(run: str, **settings) -> ml_collections.ConfigDict:
  """The evaluation-only config of the saved classifier at `run` (its own config, total_steps=0,
  init_checkpoint=run) with one `featviz` evaluator holding `settings` (keys as above)."""
  from jaxcv.evaluators import ood  # pylint: disable=import-outside-toplevel
  unknown = sorted(set(settings) - set(DEFAULTS))
  if unknown:
    raise ConfigError(f'unknown featviz evaluator settings {unknown}; known: {sorted(DEFAULTS)}')
  config = ood.evaluation_config(run)  # The run's config, evaluation only (OOD settings dropped).
  config.evals = ml_collections.ConfigDict({'featviz': {**DEFAULTS, **settings,
                                                        'type': 'featviz'}})
  return config
