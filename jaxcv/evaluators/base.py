"""Evaluators: small objects that take a task's predict functions and yield (name, value).

An evaluator is built once per run from its config section (`config.evals.<name>`), holds its
data on the device, and is called with the variables to evaluate. New kinds (OOD, robustness,
generative quality, segmentation) register a class here and need no change to the loop. An
evaluator that writes files (arrays, figures, markdown) takes an `artefacts` keyword argument:
the loop then gives it an `Artefacts` writer for `<workdir>/<evaluator name>/`.
"""

from __future__ import annotations

import importlib
import inspect
import os
from typing import Any, Iterator, Optional, Protocol

import ml_collections
from jax.sharding import Mesh

from jaxcv.errors import ConfigError
from jaxcv.evaluators.artefacts import Artefacts


class Evaluator(Protocol):

  def run(self, variables: Any) -> Iterator[tuple[str, float]]:
    ...


EVALUATORS: dict[str, type] = {}
# Evaluators imported only when a config names them (they pull in large packages).
_MODULES = {'ood': 'jaxcv.evaluators.ood'}


def register(name: str):
  def wrap(cls):
    EVALUATORS[name] = cls
    return cls
  return wrap


def build_evaluators(config: ml_collections.ConfigDict, task, mesh: Mesh,
                     workdir: Optional[str] = None) -> dict[str, Evaluator]:
  """One evaluator per entry of config.evals, keyed by the entry's name. Evaluators whose
  constructor takes `artefacts` get a writer for `<workdir>/<name>/` (artefacts.py)."""
  evaluators = {}
  for name, eval_config in config.evals.items():
    if eval_config.type not in EVALUATORS and eval_config.type in _MODULES:
      importlib.import_module(_MODULES[eval_config.type])
    if eval_config.type not in EVALUATORS:
      raise ConfigError(f'evals.{name}.type={eval_config.type!r} is unknown; known: '
                        f'{sorted(set(EVALUATORS) | set(_MODULES))}')
    cls = EVALUATORS[eval_config.type]
    kwargs = {}
    if 'artefacts' in inspect.signature(cls).parameters:
      kwargs['artefacts'] = Artefacts(None if workdir is None else os.path.join(workdir, name))
    evaluators[name] = cls(eval_config, config, task, mesh, **kwargs)
  return evaluators
