"""Evaluators: small objects that take a task's predict functions and yield (name, value).

An evaluator is built once per run from its config section (`config.evals.<name>`), holds its
data on the device, and is called with the variables to evaluate. New kinds (OOD, robustness,
generative quality, segmentation) register a class here and need no change to the loop. An
evaluator that writes files (arrays, figures, markdown) takes an `artefacts` keyword argument:
the loop then gives it an `Artefacts` writer for `<workdir>/<evaluator name>/`.
"""

from __future__ import annotations

import inspect
import os
from typing import Any, Iterator, Optional, Protocol

import ml_collections
from jax.sharding import Mesh

from jaxcv import plugins
from jaxcv.errors import ConfigError
from jaxcv.evaluators.artefacts import Artefacts


class Evaluator(Protocol):

  def run(self, variables: Any) -> Iterator[tuple[str, float]]:
    ...


# Each evaluator module registers its class; it is imported only when a config names it
# (jaxcv/plugins.py): by the index, else as jaxcv.evaluators.<type>.
EVALUATORS = plugins.Registry('evaluator', package='jaxcv.evaluators', modules={
    **{name: f'jaxcv.evaluators.{name}' for name in (
        'classification', 'domains', 'feature_gap', 'generative', 'ood', 'robustness',
        'segmentation')},
    'sbm': 'jaxcv.multimodal.evaluator', 'reconstruction': 'jaxcv.multimodal.evaluator',
    'pixel_geometry': 'jaxcv.san.evaluator'})
register = EVALUATORS.register


def predict_function(task, name: str, evaluator: str):
  """The task's predict function `name`; a ConfigError naming the ones it has otherwise."""
  fns = task.predict_fns()
  if name not in fns:
    raise ConfigError(f'{evaluator} evaluator: the task has no predict function {name!r}; it has '
                      f'{sorted(fns)}')
  return fns[name]


def build_evaluators(config: ml_collections.ConfigDict, task, mesh: Mesh,
                     workdir: Optional[str] = None) -> dict[str, Evaluator]:
  """One evaluator per entry of config.evals, keyed by the entry's name. Evaluators whose
  constructor takes `artefacts` get a writer for `<workdir>/<name>/` (artefacts.py)."""
  evaluators = {}
  for name, eval_config in config.evals.items():
    try:
      cls = EVALUATORS[eval_config.type]
    except plugins.UnknownNameError as e:
      raise ConfigError(f'evals.{name}.type: {e}') from None
    kwargs = {}
    if 'artefacts' in inspect.signature(cls).parameters:
      kwargs['artefacts'] = Artefacts(None if workdir is None else os.path.join(workdir, name))
    evaluators[name] = cls(eval_config, config, task, mesh, **kwargs)
  return evaluators
