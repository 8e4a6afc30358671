"""Post-hoc OOD detectors by name: `build_detector('energy(temperature=2)')`.

Every detector returns ID-ness (higher = more in-distribution), OpenOOD's sign; the metrics
negate it at their boundary. Names and OpenOOD-default arguments:

  logits:      msp, maxlogit, energy(temperature=1), entropy, doctor, logit_norm, klm
  features:    mds(layer=None), rmds(layer=None), vim(dim=None), knn(k=50), gradnorm
  layers:      mds_all (Mahalanobis summed over layers), gram(powers=5, holdout=0.1)
  shaping:     react(percentile=90), dice(p=90), ash(percentile=90, variant='s'),
               scale(percentile=85)
  gradients:   odin(temperature=1000, noise=0.0014)  (scores images, not a FeatureSet)
  views:       cadet(term='cadet', n_views=10, min_scale=0.2)  (CADet, jaxcv/cadet/detector.py:
               fit_images / score_images through an embedding function)

A list is comma-separated, commas inside parentheses belonging to the arguments:
'msp,energy(temperature=2),knn(k=10)'.
"""

from __future__ import annotations

from typing import Iterable, Union

from jaxcv import specs
from jaxcv.errors import ConfigError
from jaxcv.ood.detectors.base import DETECTORS, BaseDetector, Detector, register
# Importing the detector modules registers their detectors.
from jaxcv.ood.detectors.feature import (GradNorm, KNN, MDS, RMDS, ViM, empirical_precision,
                                         mahalanobis)
from jaxcv.ood.detectors.gradient import ODIN, odin_scores
from jaxcv.ood.detectors.layers import GRAM, MDSAll, gram_powers_of, gram_row_sums
from jaxcv.ood.detectors.logit import (Doctor, Energy, Entropy, KLMatching, LogitNorm, MaxLogit,
                                       MSP)
from jaxcv.ood.detectors.shaping import ASH, DICE, ReAct, SCALE


def build_detector(spec: str) -> BaseDetector:
  """'energy' or 'energy(temperature=2)' -> a new, unfitted detector. Unknown names, unknown or
  positional arguments and bad values raise ConfigError."""
  parsed = specs.parse(spec, 'OOD detector')
  cls = DETECTORS[parsed.name]
  return cls(**specs.bind(parsed, specs.parameters(cls.__init__, skip=1), 'OOD detector'))


def split_specs(text: str) -> list[str]:
  """'msp,knn(k=5),ash(percentile=90, variant="b")' -> one spec per detector."""
  return specs.split(text, ',', 'OOD detector list')


def build_detectors(specs: Union[str, Iterable[str]]) -> list[BaseDetector]:
  """A comma-separated string or a list of specs -> detectors, each spec at most once."""
  specs = split_specs(specs) if isinstance(specs, str) else list(specs)
  if not specs:
    raise ConfigError(f'no OOD detectors given; known: {", ".join(sorted(DETECTORS))}')
  detectors = [build_detector(s) for s in specs]
  seen = set()
  for d in detectors:
    if d.spec in seen:
      raise ConfigError(f'OOD detector {d.spec} is listed twice')
    seen.add(d.spec)
  return detectors


__all__ = [
    'ASH', 'BaseDetector', 'DETECTORS', 'DICE', 'Detector', 'Doctor', 'Energy', 'Entropy',
    'GRAM', 'GradNorm', 'KLMatching', 'KNN', 'LogitNorm', 'MDS', 'MDSAll', 'MSP', 'MaxLogit',
    'ODIN', 'RMDS', 'ReAct', 'SCALE', 'ViM', 'build_detector', 'build_detectors',
    'empirical_precision', 'gram_powers_of', 'gram_row_sums', 'mahalanobis', 'odin_scores',
    'register', 'split_specs',
]
