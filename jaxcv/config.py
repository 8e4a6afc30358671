"""Experiment configs: the common schema, loading `file.py:arg`, overrides, shrinking and validation.

A config file defines `get_config(arg: str | None) -> ConfigDict`, usually starting from
`base_config()` so that every run has the same keys and typos fail (the dict is locked). The
argument string follows big_vision: `configs/x.py:variant=b,runlocal` gives
`parse_arg('variant=b,runlocal', variant='a', runlocal=False)` -> {variant: 'b', runlocal: True}.
"""

from __future__ import annotations

import ast
import contextlib
import importlib
import importlib.util
import os
import re
import sys
import traceback
import types
from pathlib import Path
from typing import Any, Iterable, Optional

import ml_collections
from ml_collections import config_dict

from jaxcv import specs
from jaxcv.errors import ConfigError, UserError

placeholder = config_dict.placeholder


def base_config() -> ml_collections.ConfigDict:
  """The keys every experiment has. Tasks add their own section (e.g. `config.afd`)."""
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.task = 'classification'

  c.model = ml_collections.ConfigDict()
  c.model.name = 'resnet18'
  # Passed to the model constructor; a config file may add any keyword the model accepts.
  c.model.kwargs = ml_collections.ConfigDict()

  c.data = ml_collections.ConfigDict()
  c.data.name = 'cifar10'
  c.data.train_split = 'train'
  c.data.data_dir = placeholder(str)  # None: the JAXCV_DATA_DIR environment variable.
  # 'device': the whole split lives on the accelerator as uint8 (small datasets);
  # 'streaming': host pipeline through grain (large datasets).
  c.data.loader = 'device'
  # On-device augmentation pipeline, ops separated by '|' (see jaxcv/data/augment.py).
  c.data.augment = 'crop(padding=4)|flip'
  c.data.mixing = ''  # Label mixing after augment, e.g. 'mixup(alpha=1.0)' or 'cutmix(alpha=1.0)'.
  c.data.train_examples = placeholder(int)  # Train on a seeded random subset of N examples.
  c.data.image_size = placeholder(int)  # Resize every split to this square size on loading.
  # Device loader: every batch takes batch_size / D examples from each of the D training domains
  # (DomainBed's one minibatch per environment); needs domain ids, e.g. 'domainbed(...):pacs'.
  c.data.balance_domains = False

  c.batch_size = 512  # Global batch, split over the (data, fsdp) mesh axes.
  c.num_epochs = placeholder(float)
  c.total_steps = placeholder(int)  # Takes precedence over num_epochs; 0 = evaluate only.

  c.optimizer = ml_collections.ConfigDict()
  c.optimizer.name = 'sgd'  # sgd | adam | adamw | lamb | lars
  c.optimizer.momentum = 0.9
  c.optimizer.nesterov = True
  c.optimizer.b1 = 0.9
  c.optimizer.b2 = 0.999
  c.optimizer.weight_decay = 5e-4
  c.optimizer.decay_norm_and_bias = True  # PyTorch's SGD default decays every parameter.
  c.optimizer.grad_clip_norm = placeholder(float)
  c.optimizer.param_groups = ()  # ((regex, lr_scale, wd_scale), ...): see jaxcv/optim.py.
  c.optimizer.freeze_after = ()  # ((regex, step), ...): matching parameters stop changing.

  c.schedule = ml_collections.ConfigDict()
  c.schedule.name = 'cosine'  # constant | cosine | linear | step | onecycle | triangle
  c.schedule.lr = 0.1
  c.schedule.warmup_steps = 0
  c.schedule.end_factor = 0.0  # cosine/linear decay to lr * end_factor.
  c.schedule.step_boundaries = ()  # step: fractions of training where lr drops by step_factor.
  c.schedule.step_factor = 0.1
  c.schedule.step_factors = ()  # step: one factor per boundary instead (overrides step_factor).
  c.schedule.start_factor = 0.0  # triangle: lr * start_factor -> lr at peak_fraction -> end_factor.
  c.schedule.peak_fraction = 0.5

  c.label_smoothing = 0.0
  c.ema_decay = 0.0  # 0 disables the EMA of parameters.
  c.eval_with_ema = True  # Evaluate the EMA parameters when there are any.
  # The average kept in ema_params: 'ema' (ema_decay) or 'uniform' (the mean of the iterates
  # from start_step on); batch_stats: the model state it is evaluated with. See jaxcv/averaging.py.
  c.averaging = ml_collections.ConfigDict(
      {'kind': 'ema', 'start_step': 1, 'batch_stats': 'online'})
  c.dtype = 'float32'  # Compute dtype: float32 | bfloat16 (parameters stay float32).

  c.mesh = ml_collections.ConfigDict({'data': -1, 'fsdp': 1, 'tensor': 1})
  # (regex on the parameter path, rule) pairs; first match wins. Rules: 'replicate', 'fsdp',
  # or a tuple with one mesh-axis name (or None) per array dimension.
  c.param_sharding = (('.*', 'replicate'),)

  c.evals = ml_collections.ConfigDict()  # name -> ConfigDict(type=..., ...); see jaxcv/evaluators.
  c.eval_every_steps = 0  # 0: evaluate at the end only.
  c.log_every_steps = 50
  # Train steps per jitted call (a lax.scan; device loader only). Calls never cross a log, eval
  # or checkpoint boundary, so results are those of one step per call.
  c.steps_per_call = 1
  c.checkpoint_every_steps = 1000
  c.keep_checkpoints = 3
  c.async_checkpointing = True
  c.init_checkpoint = ''  # Start from another run's workdir or checkpoint (fine-tuning, eval-only).
  c.init_weights = 'plain'  # Which weights of init_checkpoint: 'plain' (trained) or 'ema'.
  c.progress_bar = True  # Also off by itself when the output is not a terminal (a job's log).
  c.plot = True
  c.tensorboard = False  # Also write TensorBoard scalars to <workdir>/tensorboard (tensorboardX).
  return c


_BOOLEANS = {'true': True, '1': True, 'yes': True, 'false': False, '0': False, 'no': False}


def parse_arg(arg: Optional[str], **defaults) -> ml_collections.ConfigDict:
  """Parses 'a=1,b=x,flag' into a ConfigDict, typed and restricted by `defaults`."""
  result = ml_collections.ConfigDict(defaults)
  if not arg:
    return result
  for item in specs.split(arg, ',', 'config argument'):  # Values may hold commas in brackets.
    key, has_value, raw = item.partition('=')
    if key not in defaults:
      raise ConfigError(f'unknown config argument {key!r}; known: {sorted(defaults)}')
    default = defaults[key]
    if not has_value:
      if not isinstance(default, bool):
        raise ConfigError(f'config argument {key!r} needs a value ({key}=...)')
      value = True
    elif isinstance(default, bool):
      if raw.lower() not in _BOOLEANS:  # A typo (runlocal=ture) must not quietly mean False.
        raise ConfigError(f'config argument {key}={raw!r}: expected one of {", ".join(_BOOLEANS)}')
      value = _BOOLEANS[raw.lower()]
    elif isinstance(default, (int, float)):
      try:
        value = type(default)(raw)
      except ValueError:
        raise ConfigError(f'config argument {key}={raw!r} is not a {type(default).__name__}') from None
    else:
      value = raw
    result[key] = value
  return result


def _package_chain(path: Path) -> list[str]:
  """Names of the packages enclosing `path` (folders with __init__.py), outermost first."""
  names, folder = [], path.parent
  while (folder / '__init__.py').is_file():
    names.insert(0, folder.name)
    folder = folder.parent
  return names


def load_module(path: str) -> types.ModuleType:
  """Imports a config or table file so that it can import its siblings (`from . import common`).

  A file inside a package (configs/ is one) is imported under its dotted name; the `configs/...`
  paths the README shows also resolve in an installed wheel, where configs/ ships as
  jaxcv.configs. Any other file is loaded on its own.
  """
  file = Path(path)
  if not file.is_file():
    parts = Path(os.path.normpath(path)).parts
    if parts and parts[0] == 'configs' and path.endswith('.py'):
      name = '.'.join(('jaxcv', *parts))[:-3]
      try:
        return importlib.import_module(name)
      except ModuleNotFoundError as e:
        if not name.startswith(e.name or '?'):  # A missing import inside the file: report it.
          raise
    raise ConfigError(f'config file {path!r} does not exist')
  file = file.resolve()
  packages = _package_chain(file)
  if packages:
    root = str(file.parents[len(packages)])
    name = '.'.join((*packages, file.stem))
    try:
      found = importlib.util.find_spec(packages[0])
    except (ImportError, ValueError):
      found = None
    location = list(found.submodule_search_locations or []) if found else []
    if not location or Path(location[0]).resolve() != Path(root, packages[0]):
      sys.path.insert(0, root)  # A package of the user's own: importable from where it is.
      for module in [m for m in sys.modules
                     if m == packages[0] or m.startswith(packages[0] + '.')]:
        del sys.modules[module]  # Another package of that name was imported: use this one.
    return importlib.import_module(name)
  module_spec = importlib.util.spec_from_file_location('_jaxcv_config', file)
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  return module


@contextlib.contextmanager
def _config_file_errors(path: str):
  """A config file that fails to import or run: one ConfigError naming the file and line."""
  try:
    yield
  except UserError:
    raise
  except Exception as e:  # pylint: disable=broad-except  (anything the user's file raises)
    if isinstance(e, SyntaxError) and e.filename:
      where = f'{e.filename}:{e.lineno}'
    else:
      frames = traceback.extract_tb(e.__traceback__)
      target = str(Path(path).resolve())
      ours = [f for f in frames if f.filename == target] or frames[-1:]
      where = f'{ours[-1].filename}:{ours[-1].lineno}' if ours else path
    why = ' '.join(str(e).split())
    raise ConfigError(f'config file {where}: {type(e).__name__}: {why}') from None


def load(spec: str, overrides: Iterable[str] = ()) -> ml_collections.ConfigDict:
  """Loads `path/to/config.py[:arg]` via its `get_config(arg)`, applies overrides, validates.

  The same function serves `python -m jaxcv.main` and notebooks, so both see the same checks.
  """
  path, _, arg = spec.partition(':')
  with _config_file_errors(path):
    module = load_module(path)
  if not hasattr(module, 'get_config'):
    raise ConfigError(f'{path} defines no get_config(arg)')
  with _config_file_errors(path):
    config = module.get_config(arg or None)
  if not isinstance(config, ml_collections.ConfigDict):
    raise ConfigError(f'{path}: get_config returned {type(config).__name__}, not an '
                      'ml_collections.ConfigDict (start from config.base_config())')
  config.lock()
  apply_overrides(config, overrides)
  validate(config)
  return config


def _parse_value(raw: str, current: Any, key: str):
  """Converts a command-line string to the type of the field it replaces."""
  if isinstance(current, bool):
    if raw.lower() not in ('true', 'false', '1', '0'):
      raise ConfigError(f'{key}={raw!r}: expected true or false')
    return raw.lower() in ('true', '1')
  if isinstance(current, (int, float)):
    try:
      return type(current)(raw)
    except ValueError:
      raise ConfigError(f'{key}={raw!r}: expected a {type(current).__name__}') from None
  if isinstance(current, str):
    return raw
  try:
    return ast.literal_eval(raw)
  except (ValueError, SyntaxError):
    return raw


def apply_overrides(config: ml_collections.ConfigDict, overrides: Iterable[str]) -> None:
  """Applies 'a.b=value' strings (as `--config.a.b=value` does) with type checks."""
  for item in overrides:
    key, sep, raw = item.partition('=')
    if not sep:
      raise ConfigError(f'override {item!r} is not of the form key=value')
    parent, _, leaf = key.rpartition('.')
    node = config
    for part in filter(None, parent.split('.')):
      if part not in node:
        raise ConfigError(f'unknown config key {key!r}')
      node = node[part]
    if leaf not in node:
      raise ConfigError(f'unknown config key {key!r}; keys here: {sorted(node.keys())}')
    field = node.get_ref(leaf) if isinstance(node, ml_collections.ConfigDict) else None
    current = node[leaf]
    if current is None and field is not None and field.get_type() is not None:
      current = field.get_type()()  # A typed placeholder: parse as its type.
    try:
      node[leaf] = _parse_value(raw, current, key)
    except TypeError as e:
      raise ConfigError(f'{key}={raw!r}: {e}') from None


def shrink_for_local_run(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """Makes any config tiny enough for a laptop/CPU debug run (the `runlocal` argument)."""
  config.batch_size = min(config.batch_size, 32)
  config.total_steps = 10
  config.data.train_examples = 256
  config.log_every_steps = 2
  config.eval_every_steps = 0
  config.checkpoint_every_steps = 5
  for name in config.evals:
    if 'max_examples' in config.evals[name]:
      config.evals[name].max_examples = 256
  return config


_DTYPES = ('float32', 'bfloat16')


def validate(config: ml_collections.ConfigDict) -> None:
  """Checks values a config file or override can get wrong, with messages that say how to fix."""
  def need(condition, message):
    if not condition:
      raise ConfigError(message)

  need(config.batch_size > 0, f'batch_size must be positive, got {config.batch_size}')
  need(config.total_steps is not None or config.num_epochs is not None,
       'set total_steps or num_epochs')
  need(config.total_steps is None or config.total_steps >= 0, 'total_steps must be >= 0')
  need(config.dtype in _DTYPES, f'dtype must be one of {_DTYPES}, got {config.dtype!r}')
  need(0.0 <= config.ema_decay < 1.0, f'ema_decay must be in [0, 1), got {config.ema_decay}')
  from jaxcv import averaging  # pylint: disable=import-outside-toplevel  (imports jax)
  averaging.check(config)
  need(config.get('init_weights', 'plain') in ('plain', 'ema'),
       f"init_weights must be 'plain' or 'ema', got {config.get('init_weights')!r}")
  need(config.data.loader in ('device', 'streaming'),
       f"data.loader must be 'device' or 'streaming', got {config.data.loader!r}")
  need(config.log_every_steps > 0, 'log_every_steps must be positive')
  need(config.checkpoint_every_steps >= 0, 'checkpoint_every_steps must be >= 0')
  need(config.eval_every_steps >= 0, 'eval_every_steps must be >= 0 (0: at the end only)')
  for axis in ('data', 'fsdp', 'tensor'):
    size = config.mesh[axis]
    need(size == -1 or size >= 1, f'mesh.{axis} must be -1 (fill) or >= 1, got {size}')
  for name, evaluator in config.evals.items():
    need('type' in evaluator, f'evals.{name} needs a type')
  for rule in config.param_sharding:
    need(len(rule) == 2, f'param_sharding entries are (regex, rule) pairs, got {rule!r}')
    try:
      re.compile(rule[0])
    except re.error as e:
      raise ConfigError(f'param_sharding regex {rule[0]!r}: {e}') from None
