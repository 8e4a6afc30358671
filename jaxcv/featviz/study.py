"""One model's feature-visualisation study: every parameterisation on the same targets, measured.

`run_study` visualises the targets with each parameterisation (all targets in one program per
parameterisation), then measures (jaxcv.featviz.metrics): the target logit and probability on
the clean images, top-1 transferability to other classifiers, plausibility in the model's own
feature space, the FID/KID proxy in a judge classifier's space, and the radial power spectrum
against the reference images'. The class metrics need class targets ('logit' objective); other
objectives get the objective value and the spectrum metrics.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from typing import Any, Optional, Sequence

import jax
import numpy as np

from jaxcv.featviz import metrics as metrics_lib
from jaxcv.featviz import objectives as objectives_lib
from jaxcv.featviz import optimize, spectrum, transforms
from jaxcv.featviz import parameterizations as params_lib

log = logging.getLogger(__name__)


@dataclasses.dataclass
class Reference:
  """Real images (uint8 NHWC, the models' input size) with labels: class-mean features for
  plausibility, the FID proxy's real side and the data spectrum."""
  images: np.ndarray
  labels: np.ndarray

  def __post_init__(self):
    self.power = spectrum.radial_power_spectrum(self.images)

  def float_images(self) -> np.ndarray:
    return self.images.astype(np.float32) / 255.0


@dataclasses.dataclass
class Settings:
  parameterizations: Sequence[str] = params_lib.PARAMETERIZATIONS
  objective: str = 'logit'
  steps: int = 256
  canvas: int = 0  # Square canvas side; 0: the model's input size.
  schedule: transforms.CropSchedule = transforms.CropSchedule()
  decay_power: float = 1.0  # Lucid's Fourier decay d.
  seed: int = 0


@dataclasses.dataclass
class StudyResult:
  metrics: dict[str, dict[str, float]]  # parameterisation -> metric -> value
  visualizations: dict[str, optimize.Visualization]
  spectra: dict[str, np.ndarray]  # parameterisation -> radial power spectrum
  reference_power: np.ndarray


def features_fn(classifier):
  """images -> (logits, features), jitted once per classifier (inference.Classifier)."""
  return classifier.jitted(('featviz_features',), lambda: lambda x: classifier.features(
      classifier.variables, x))


def run_study(classifier, targets, settings: Settings, *, magnitude: Optional[np.ndarray],
              reference: Optional[Reference] = None, transfer: Sequence[Any] = (),
              judge: Any = None, judge_reference_features: Optional[np.ndarray] = None
             ) -> StudyResult:
  """Visualises `targets` on `classifier` (an inference.Classifier) with every parameterisation
  in `settings` and measures them. `transfer`: other classifiers; `judge`: the FID-proxy
  classifier, with its features of the reference images."""
  input_size = tuple(int(s) for s in (reference.images.shape[1:3] if reference is not None
                                      else (32, 32)))
  canvas = settings.canvas or input_size[0]
  objective = objectives_lib.parse(settings.objective)
  forward = objectives_lib.classifier_forward(classifier.model, classifier.variables,
                                              with_intermediates=objective.kind != 'logit')
  targets = np.asarray(targets)
  class_targets = objective.kind == 'logit'
  own = features_fn(classifier)
  means = None
  if reference is not None and class_targets:
    _, real_features = metrics_lib.batched(own, reference.float_images())
    means = metrics_lib.class_means(real_features, reference.labels,
                                    num_classes(classifier))

  results, visualizations, spectra = {}, {}, {}
  for name in settings.parameterizations:
    param = params_lib.build(name, canvas, canvas, magnitude=magnitude,
                             decay_power=settings.decay_power)
    t0 = time.perf_counter()
    vis = optimize.visualize(forward, param, objective, targets, steps=settings.steps,
                             schedule=settings.schedule, input_size=input_size,
                             seed=settings.seed)
    seconds = time.perf_counter() - t0
    images = metrics_lib.to_input_size(vis.images, input_size)
    m = {'objective': float(vis.trace[-1].mean()), 'seconds': seconds}
    if class_targets:
      logits, features = metrics_lib.batched(own, images)
      m.update(metrics_lib.target_scores(logits, targets))
      m['top1'] = metrics_lib.top1_agreement(logits, targets)
      if transfer:
        m['transfer'] = float(np.mean([
            metrics_lib.top1_agreement(metrics_lib.batched(features_fn(other), images)[0],
                                       targets) for other in transfer]))
      if means is not None:
        m['plausibility'] = metrics_lib.plausibility(features, targets, means)
      if judge is not None and judge_reference_features is not None and len(targets) >= 2:
        judge_features = metrics_lib.batched(features_fn(judge), images)[1]
        m.update(metrics_lib.fid_kid_proxy(judge_features, judge_reference_features,
                                           f'classifier:{judge.name}', seed=settings.seed))
    if reference is not None:
      m.update(metrics_lib.spectrum_metrics(images, reference.power))
      spectra[name] = spectrum.radial_power_spectrum(images, num_bins=len(reference.power))
    log.info('featviz %s on %s: %s', name, classifier.name,
             {k: round(v, 4) for k, v in m.items()})
    results[name] = m
    visualizations[name] = vis
  return StudyResult(results, visualizations, spectra,
                     None if reference is None else reference.power)


def judge_features(judge, reference: Reference) -> np.ndarray:
  return metrics_lib.batched(features_fn(judge), reference.float_images())[1]


def num_classes(classifier) -> int:
  return int(np.shape(jax.device_get(classifier.variables['params']['head']['kernel']))[-1])
