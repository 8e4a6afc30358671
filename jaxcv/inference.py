"""One way to load a trained run: its config, task, data description, weights and predict functions.

    run = load_run('runs/afd', weights='auto')     # 'auto' | 'ema' | 'plain'
    run.config, run.task, run.info, run.variables, run.predict_fns['logits'](run.variables, x01)
    clf = run.classifier()                         # a plain classifier, for OOD / FID / attacks
    logits, features = clf.features(clf.variables, x01)

The task is built from the run's config.json through the normal task registry, so a run loads
with exactly the model it trained. `classifier()` goes through the task hook
`Task.export_classifier(variables)`: a plain network's variables as they are, an AFD run's with
its disentangler folded into the head. The weights come from `jaxcv.checkpoint` (the low-level
reader: `load_run_weights`); the data description from the run's data_info.json (written by the
loop), so loading reads no training data; runs saved before it existed fall back to opening the
training split named in their config.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
from pathlib import Path
from typing import Any, Callable, Optional, Union

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jaxcv import checkpoint as checkpoint_lib
from jaxcv.data.dataset import DataInfo
from jaxcv.errors import ConfigError

WEIGHTS = ('auto', 'ema', 'plain')
DATA_INFO_FILE = 'data_info.json'
_USE_EMA = {'auto': None, 'ema': True, 'plain': False}


# ------------------------------------------------------------------ data description of a run

def save_data_info(info: DataInfo, workdir: str) -> None:
  """Writes `<workdir>/data_info.json`: what a task needs to rebuild its model without data."""
  with open(os.path.join(workdir, DATA_INFO_FILE), 'w') as f:
    json.dump(dataclasses.asdict(info), f, indent=2)


def stored_data_info(path: Union[str, os.PathLike]) -> Optional[DataInfo]:
  """The DataInfo saved with the run at or above `path`, or None when it has none."""
  found = checkpoint_lib.find_run_config(path)
  if found is None or not (found[0] / DATA_INFO_FILE).is_file():
    return None
  with open(found[0] / DATA_INFO_FILE) as f:
    fields = json.load(f)
  return DataInfo(num_classes=int(fields['num_classes']),
                  image_shape=tuple(fields['image_shape']),
                  num_train_examples=int(fields['num_train_examples']),
                  class_names=tuple(fields.get('class_names') or ()))


def _tuples(value: Any) -> Any:
  """JSON lists back to the tuples config files use (models take tuples of stage sizes)."""
  if isinstance(value, dict):
    return {k: _tuples(v) for k, v in value.items()}
  if isinstance(value, list):
    return tuple(_tuples(v) for v in value)
  return value


def run_config(path: Union[str, os.PathLike]) -> tuple[Path, ml_collections.ConfigDict]:
  """(run folder, its config as a ConfigDict) of the run at or above `path` (a workdir, its
  checkpoints folder or a step folder); ConfigError when there is no jaxcv run there."""
  found = checkpoint_lib.find_run_config(path)
  if found is None:
    raise ConfigError(f'{path} is not a jaxcv run: no config.json at or above it (expected the '
                      'workdir written by jaxcv training)')
  return found[0], ml_collections.ConfigDict(_tuples(found[1]))


def run_data_info(path: Union[str, os.PathLike], config) -> DataInfo:
  """The run's stored DataInfo, else (older runs) the one of its training split."""
  info = stored_data_info(path)
  if info is None:
    from jaxcv.data import open_train_data  # pylint: disable=import-outside-toplevel
    info = open_train_data(config)[1]
  return info


# ------------------------------------------------------------------ classifiers

def weights_fingerprint(variables: Any) -> str:
  """A short digest of the values of a variables pytree: names the weights in cache keys."""
  h = hashlib.sha256()
  for path, leaf in jax.tree_util.tree_flatten_with_path(jax.device_get(variables))[0]:
    h.update(jax.tree_util.keystr(path).encode())
    h.update(np.ascontiguousarray(leaf).tobytes())
  return h.hexdigest()[:16]


@dataclasses.dataclass
class Classifier:
  """A plain classifier: a zoo model (`__call__(x, train=False, return_features=True)` and a
  `head` Dense layer) and its variables. What OOD detectors, feature spaces and attacks use.

  Attributes:
    model: the linen module.
    variables: {'params': ..., plus model state such as 'batch_stats'}.
    name: a short label for file names and tables ('<run folder>@<step>').
    fingerprint: identifies the weights (cache keys); default: a digest of their values.
    config: the config of the run it came from, when known.
    checkpoint, step, use_ema: the run folder, step and weights kind, when loaded from a run.
  """
  model: nn.Module
  variables: Any
  name: str = 'classifier'
  fingerprint: str = ''
  config: Optional[ml_collections.ConfigDict] = None
  # Where the weights came from, when they came from a saved run.
  checkpoint: str = ''
  step: int = 0
  use_ema: bool = False
  # Jitted passes by (kind, input shape, options): splits of one shape compile once.
  _jitted: dict = dataclasses.field(default_factory=dict, repr=False, compare=False)

  def __post_init__(self):
    if not self.fingerprint:
      self.fingerprint = weights_fingerprint(self.variables)

  def jitted(self, key: tuple, make: Callable[[], Callable]) -> Callable:
    """jax.jit(make()), made once per `key`."""
    if key not in self._jitted:
      self._jitted[key] = jax.jit(make())
    return self._jitted[key]

  @functools.cached_property
  def head(self):
    """The head (W [D, K], b [K]) as numpy, for detectors that use it."""
    from jaxcv.ood.featureset import Head  # pylint: disable=import-outside-toplevel
    params = self.variables['params']['head']
    return Head(np.asarray(params['kernel']), np.asarray(params['bias']))

  def logits(self, variables, images: jax.Array) -> jax.Array:
    """float32 logits of float [0, 1] images at the model's input shape."""
    return self.model.apply(variables, images, train=False).astype(jnp.float32)

  def features(self, variables, images: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(float32 logits, penultimate features) of float [0, 1] images."""
    logits, feats = self.model.apply(variables, images, train=False, return_features=True)
    return logits.astype(jnp.float32), feats.astype(jnp.float32)


# ------------------------------------------------------------------ runs

@dataclasses.dataclass
class LoadedRun:
  """A trained run, ready for inference (see the module docstring)."""
  config: ml_collections.ConfigDict
  task: Any  # jaxcv.tasks.Task
  info: DataInfo
  variables: dict  # {'params': ..., **model_state}, on the default device.
  step: int
  used_ema: bool
  run_dir: Path
  path: str  # The path it was loaded from.

  @functools.cached_property
  def predict_fns(self) -> dict[str, Callable]:
    """The task's named functions (variables, float images in [0, 1]) -> outputs."""
    return self.task.predict_fns()

  @property
  def name(self) -> str:
    return f'{self.run_dir.name}@{self.step}'

  def classifier(self) -> Classifier:
    """The run as a plain classifier (the task's `export_classifier` hook)."""
    model, variables = self.task.export_classifier(self.variables)
    tag = 'ema' if self.used_ema else 'plain'
    return Classifier(model, variables, name=self.name, config=self.config,
                      fingerprint=f'{self.run_dir}@{self.step}:{tag}',
                      checkpoint=str(self.run_dir), step=self.step, use_ema=self.used_ema)


def load_run(path: Union[str, os.PathLike], weights: str = 'auto') -> LoadedRun:
  """Loads the run at `path` (a workdir, its checkpoints folder or one step folder).

  weights: 'auto' takes the EMA parameters when the run kept them and evaluated with them
    (its eval_with_ema), else the trained ones; 'ema' requires EMA parameters (ConfigError when
    the run kept none); 'plain' takes the trained parameters.
  """
  from jaxcv.tasks import build_task  # pylint: disable=import-outside-toplevel  (tasks use this)
  if weights not in WEIGHTS:
    raise ConfigError(f'weights={weights!r}: expected one of {WEIGHTS}')
  run_dir, config = run_config(path)
  loaded = checkpoint_lib.load_run_weights(path, _USE_EMA[weights],
                                           what=f'weights=ema: the run at {path}')
  info = run_data_info(path, config)
  task = build_task(config, info)
  return LoadedRun(config=config, task=task, info=info,
                   variables=jax.device_put(loaded.variables), step=int(loaded.step),
                   used_ema=loaded.used_ema, run_dir=run_dir, path=str(path))


def classifier_variables(path: Union[str, os.PathLike], weights: str = 'auto') -> tuple[Any, dict]:
  """(params, model_state) of the run at `path` exported as a plain classifier: what a task that
  starts from a trained classifier (adversarial fine-tuning, AFD's teacher) takes."""
  variables = dict(load_run(path, weights).classifier().variables)
  return variables.pop('params'), variables
