"""Checkpoints through orbax: periodic async saves, auto-resume, topology-agnostic restore.

Each step directory holds two items: `state` (the TrainState pytree) and `meta` (JSON: the data
position and the config). Restoring builds abstract arrays with the *current* shardings, so a run
saved on 8 devices resumes on 1. A latest checkpoint that cannot be read (a partial write, a
corrupt file) is skipped with a warning in favour of the previous one; nothing is ever deleted
here except by orbax's keep-the-last-N policy after a successful save.

Another run's weights are read with `load_pretrained` (the raw state pytree) or
`load_run_weights` (its parameters, EMA or not, and its config.json): the low-level pieces under
`jaxcv.inference.load_run`, which tools that evaluate or reuse a run use.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
from pathlib import Path
from typing import Any, Mapping, Optional, Union

import jax
from jax.experimental import multihost_utils
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp

from jaxcv.errors import CheckpointError, CheckpointSaveError, ConfigError

log = logging.getLogger(__name__)


def _abstract(tree: Any) -> Any:
  """ShapeDtypeStructs carrying each leaf's sharding: the restore target."""
  return jax.tree.map(
      lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), tree)


class Checkpointer:
  """Saves and restores a run's TrainState under `<workdir>/checkpoints`."""

  def __init__(self, directory: str, *, keep: int = 3, async_save: bool = True):
    self.directory = os.path.abspath(directory)
    options = ocp.CheckpointManagerOptions(
        max_to_keep=keep, create=True, enable_async_checkpointing=async_save,
        cleanup_tmp_directories=True)  # Leftovers of a killed save are removed, not read.
    # Handlers named up front, so that a checkpoint's metadata can be read before restoring it.
    self._manager = ocp.CheckpointManager(self.directory, options=options, item_handlers={
        'state': ocp.StandardCheckpointHandler(), 'meta': ocp.JsonCheckpointHandler()})
    self._attempted: list[int] = []

  def steps(self) -> list[int]:
    return sorted(self._manager.all_steps())

  def save(self, step: int, state: Any, meta: dict) -> None:
    """Starts saving `step` (in the background when async); a failure of this or an earlier
    save raises CheckpointSaveError, naming the step that failed."""
    self._attempted.append(step)
    with self._save_errors():
      self._manager.save(step, args=ocp.args.Composite(
          state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)), force=True)

  @contextlib.contextmanager
  def _save_errors(self):
    """Turns whatever a failed save raises (often later, from the background) into one error."""
    try:
      yield
    except Exception as e:  # pylint: disable=broad-except  (disk, permissions, library errors)
      complete = sorted(int(p.name) for p in Path(self.directory).iterdir() if p.name.isdigit()
                        ) if os.path.isdir(self.directory) else []
      failed = min((s for s in self._attempted if s not in complete), default=None)
      why = (str(e).splitlines() or [''])[0][:300]
      raise CheckpointSaveError(
          f'writing the checkpoint of step {failed} to {self.directory} failed '
          f'({type(e).__name__}: {why}); complete checkpoints: {complete or "none"}, and a new '
          'run in this workdir resumes from the newest') from e

  def restore_latest(self, target_state: Any) -> Optional[tuple[Any, dict, int]]:
    """(state, meta, step) of the newest readable checkpoint, or None if there is none.

    `target_state` may be concrete or abstract; its leaves' shardings decide the placement.
    """
    steps = self.steps()
    abstract = _abstract(target_state)
    unreadable = []
    while True:
      # Every process restores the same step: process 0's newest candidate, and a step counts as
      # readable only when every process read it (each would otherwise pick its own fallback).
      step = _agreed(steps[-1] if steps else -1)
      if step < 0:
        break
      steps = [s for s in steps if s < step]
      difference = self._model_difference(step, abstract)
      if difference is not None:  # Another model's checkpoints: not damage, and not ours to move.
        raise CheckpointError(
            f'this run\'s model does not match the checkpoints in {self.directory} ({difference} '
            f'at step {step}). Use a new workdir for this model, or start it from those weights '
            f'with init_checkpoint={os.path.dirname(self.directory)}')
      try:
        restored = self._manager.restore(step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract), meta=ocp.args.JsonRestore()))
      except Exception as e:  # pylint: disable=broad-except
        # Any read failure means this step is unusable; older ones may still be good.
        log.warning('checkpoint at step %d in %s is unreadable (%s: %s); trying an older one',
                    step, self.directory, type(e).__name__, (str(e).splitlines() or [''])[0][:200])
        restored = None
      if not _everywhere(restored is not None):
        unreadable.append(step)
        continue
      self._set_aside(unreadable)
      return restored['state'], dict(restored['meta']), step
    if unreadable:
      raise CheckpointError(f'none of the checkpoints {sorted(unreadable)} in {self.directory} '
                            'could be read; move the directory aside to start afresh')
    return None

  def _model_difference(self, step: int, abstract: Any) -> Optional[str]:
    """The first parameter whose path or shape differs between the checkpoint at `step` and
    `abstract`, or None (also when the metadata cannot be read: the restore then decides)."""
    try:
      saved = self._manager.item_metadata(step)['state']
      theirs = _param_shapes(saved)
    except Exception:  # pylint: disable=broad-except
      return None
    ours = _param_shapes(abstract)
    if not theirs:
      return None
    for path, shape in ours.items():
      if path not in theirs:
        return f'{path} {shape} is not in the checkpoint'
      if theirs[path] != shape:
        return f'{path} has shape {shape} here but {theirs[path]} in the checkpoint'
    extra = next((p for p in theirs if p not in ours), None)
    return None if extra is None else f'the checkpoint has {extra} {theirs[extra]}, this model not'

  def _set_aside(self, steps: list[int]) -> None:
    """Renames unreadable steps to '<step>.unreadable' (kept for inspection, never deleted), so
    the resumed run can save those step numbers again."""
    if not steps:
      return
    if jax.process_index() == 0:
      for step in steps:
        source = os.path.join(self.directory, str(step))
        target = f'{source}.unreadable'
        while os.path.exists(target):
          target += '_'
        os.rename(source, target)
        log.warning('moved the unreadable checkpoint to %s', target)
    if jax.process_count() > 1:  # No process looks at the folder before process 0 renamed.
      multihost_utils.sync_global_devices('jaxcv.checkpoint.set_aside')
    self._manager.reload()

  def wait(self) -> None:
    with self._save_errors():
      self._manager.wait_until_finished()

  def close(self) -> None:
    try:
      self.wait()
    finally:
      with contextlib.suppress(Exception):  # The save's own error is already raised by wait().
        self._manager.close()


def _agreed(step: int) -> int:
  """Process 0's `step`, on every process."""
  if jax.process_count() == 1:
    return step
  return int(multihost_utils.broadcast_one_to_all(np.int32(step)))


def _everywhere(ok: bool) -> bool:
  """Whether `ok` holds on every process."""
  if jax.process_count() == 1:
    return ok
  return bool(np.all(multihost_utils.process_allgather(np.int32(ok))))


def path_str(path: tuple) -> str:
  """A pytree key path as 'params/conv1/kernel' (dict keys, attribute names, indices)."""
  names = []
  for key in path:
    name = next((getattr(key, a) for a in ('key', 'name', 'idx') if hasattr(key, a)), key)
    names.append(str(name))
  return '/'.join(names)


def _param_shapes(state: Any) -> dict[str, tuple]:
  """{'params/...': shape} of a state pytree or its checkpoint metadata (a dict or TrainState)."""
  params = state.params if hasattr(state, 'params') else state['params']
  return {f'params/{path_str(p)}': tuple(x.shape)
          for p, x in jax.tree_util.tree_leaves_with_path(params)}


def first_non_finite(tree: Any) -> Optional[str]:
  """The path of the first floating-point leaf of `tree` holding a NaN or inf, else None."""
  leaves = [(p, x) for p, x in jax.tree_util.tree_leaves_with_path(tree)
            if jnp.issubdtype(x.dtype, jnp.inexact)]
  finite = jax.device_get(_all_finite([x for _, x in leaves])) if leaves else []
  return next((path_str(p) for (p, _), ok in zip(leaves, finite) if not ok), None)


@jax.jit
def _all_finite(leaves: list) -> list:
  return [jnp.all(jnp.isfinite(x)) for x in leaves]


def checkpoint_dir(workdir: str) -> str:
  return os.path.join(workdir, 'checkpoints')


def _local_target(metadata: Any) -> Any:
  """A restore target on this process's first device, from a checkpoint's array metadata."""
  device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
  return jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=device), metadata)


def load_pretrained(path: str) -> tuple[dict, int]:
  """Reads the raw state pytree (host arrays) of the newest readable checkpoint under `path`.

  `path` is a run's workdir, its checkpoints directory, or a single step directory. Used to
  start fine-tuning or evaluation from another run; the task decides which parts it takes.
  `KIND:PATH` (e.g. 'torchvision_resnet:/ckpt/resnet50.pth') converts a PyTorch-ecosystem
  checkpoint file in memory instead (jaxcv.pretrained; step 0).
  """
  from jaxcv import pretrained  # pylint: disable=import-outside-toplevel  (light; rarely used)
  if pretrained.parse_source(path) is not None:
    return pretrained.raw_state(pretrained.convert_source(path)), 0
  path = os.path.abspath(path)
  candidates = [path, checkpoint_dir(path)]
  for directory in candidates:
    if os.path.isdir(os.path.join(directory, 'state')):  # A step directory itself.
      checkpointer = ocp.Checkpointer(ocp.CompositeCheckpointHandler())
      restored = checkpointer.restore(directory, args=ocp.args.Composite(
          state=ocp.args.StandardRestore()))
      return restored['state'], int(os.path.basename(directory))
    if os.path.isdir(directory):
      manager = ocp.CheckpointManager(
          directory, options=ocp.CheckpointManagerOptions(create=False), item_handlers={
              'state': ocp.StandardCheckpointHandler(), 'meta': ocp.JsonCheckpointHandler()})
      for step in sorted(manager.all_steps(), reverse=True):
        try:
          try:
            restored = manager.restore(step, args=ocp.args.Composite(
                state=ocp.args.StandardRestore()))
          except ValueError as e:
            if 'topology' not in str(e).lower():
              raise
            # Saved by a job with other devices (several processes): orbax wants a target.
            restored = manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(
                _local_target(manager.item_metadata(step)['state']))))
          return restored['state'], step
        except Exception as e:  # pylint: disable=broad-except
          log.warning('pretrained checkpoint at step %d unreadable (%s); trying older', step, e)
  raise CheckpointError(f'init_checkpoint={path!r}: no readable checkpoint there (looked for a '
                        f'step directory with a state/ item, and for {checkpoint_dir(path)})')


def find_run_config(path: Union[str, os.PathLike]) -> Optional[tuple[Path, dict]]:
  """(run folder, its parsed config.json) of the run a checkpoint path belongs to, or None.

  Looks at `path` and up to 3 parents, so a workdir, its checkpoints folder, a step folder and
  an item inside one all find the run's config.json.
  """
  path = Path(path).expanduser().resolve()
  for folder in [path, *list(path.parents)[:3]]:
    candidate = folder / 'config.json'
    if candidate.is_file():
      with open(candidate) as f:
        return folder, json.load(f)
  return None


def choose_weights(raw: Mapping[str, Any], use_ema: Optional[bool], *,
                   default_use_ema: bool = True, what: str = 'the checkpoint') -> tuple[Any, bool]:
  """(params, used_ema) of a raw checkpoint state: its EMA parameters or its trained ones.

  `use_ema` None takes the EMA parameters when there are any and `default_use_ema` is true;
  True requires them (a ConfigError naming `what`, the checkpoint or setting, when the run
  kept none); False takes the trained parameters.
  """
  ema = raw.get('ema_params')
  if use_ema is None:
    use_ema = default_use_ema and ema is not None
  if not use_ema:
    return raw['params'], False
  if ema is None:
    raise ConfigError(f'{what} has no EMA weights (it was trained with ema_decay=0)')
  return ema, True


@dataclasses.dataclass(frozen=True)
class RunWeights:
  """The weights another run saved, as `load_run_weights` chose them (host arrays)."""
  params: Any
  model_state: dict  # Batch statistics and the like; empty when the model has none.
  step: int
  used_ema: bool
  run_dir: Optional[Path]  # The folder holding the run's config.json, when one was found.
  config: Optional[dict]  # That config.json, parsed.

  @property
  def variables(self) -> dict:
    """{'params': ..., **model_state}: what `model.apply` takes."""
    return {'params': self.params, **self.model_state}


def load_run_weights(path: Union[str, os.PathLike], use_ema: Optional[bool] = None, *,
                     default_use_ema: Optional[bool] = None, what: str = '') -> RunWeights:
  """The newest readable weights of the run at `path` (as in `load_pretrained`) with its config.

  `use_ema` as in `choose_weights`. When it is None the EMA parameters are taken if present and
  `default_use_ema` is true; `default_use_ema` None follows the run's `eval_with_ema` (True when
  the run config does not set it or cannot be found). `what` names the request in the error
  when EMA weights are required and missing. Most callers want `jaxcv.inference.load_run`,
  which builds on this.
  """
  found = find_run_config(path)
  run_dir, config = found if found is not None else (None, None)
  raw, step = load_pretrained(str(path))
  if default_use_ema is None:
    default_use_ema = bool((config or {}).get('eval_with_ema', True))
  params, used_ema = choose_weights(raw, use_ema, default_use_ema=default_use_ema,
                                    what=what or f'use_ema=True: checkpoint {path}')
  # Averaged weights go with their own statistics when the run kept them (jaxcv/averaging.py).
  model_state = (used_ema and raw.get('ema_model_state')) or raw.get('model_state') or {}
  return RunWeights(params=params, model_state=dict(model_state), step=step,
                    used_ema=used_ema, run_dir=run_dir, config=config)
