"""THE loop: trains and/or evaluates any task from a config. `run(config, workdir)` is the API.

Sections, in the order they run: mesh, data, task and optimizer, state (initialised sharded),
resume, train step, evaluators, loop. A method that needs something special plugs into the task
protocol (jaxcv/tasks/base.py) or registers an evaluator; it does not copy this file.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import time
from typing import Any, Optional

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from jaxcv import averaging
from jaxcv import checkpoint as checkpoint_lib
from jaxcv import compilation_cache
from jaxcv import config as config_lib
from jaxcv import inference
from jaxcv import metrics as metrics_lib
from jaxcv import optim
from jaxcv import parallel
from jaxcv import workdir as workdir_lib
from jaxcv.data import build_train_loader, open_train_data
from jaxcv.errors import ConfigError, NonFiniteLossError
from jaxcv.evaluators import build_evaluators
from jaxcv.tasks import TrainState, build_task

log = logging.getLogger(__name__)


def total_steps_for(config, steps_per_epoch: int) -> int:
  """config.total_steps, else num_epochs worth of steps (rounded)."""
  if config.total_steps is not None:
    return config.total_steps
  return int(round(config.num_epochs * steps_per_epoch))


def steps_per_call(config) -> int:
  """How many train steps one jitted call runs (`config.steps_per_call`, default 1).

  More than one folds the steps into a `lax.scan`, which removes the per-step Python
  dispatch; only the device loader's inputs stay the same from step to step, so streaming
  runs always use 1.
  """
  k = config.get('steps_per_call', 1) or 1
  if not isinstance(k, int) or k < 1:
    raise ConfigError(f'steps_per_call must be a positive int, got {k!r}')
  if k > 1 and config.data.loader != 'device':
    log.warning("steps_per_call=%d needs data.loader='device'; running 1 step per call", k)
    return 1
  return k


def build_train_step(config, task, loader, tx: optax.GradientTransformation,
                     schedule: optax.Schedule, rng: jax.Array):
  """The pure (state, inputs) -> (state, metrics) training step the loop jits.

  Public so benchmarks and tools can time exactly the step `run` uses.
  """
  def train_step(state: TrainState, inputs):
    batch = loader.get_batch(inputs, state.step)
    if getattr(task, 'wants_example_ids', False):
      batch = {**batch, 'step': state.step}  # With 'example_id' from `attach_example_ids`.
    step_rng = jax.random.fold_in(rng, state.step)  # Randomness is a function of the step.
    augment_rng, loss_rng = jax.random.split(step_rng)
    batch = task.augment(augment_rng, batch)
    grad_fn = jax.value_and_grad(task.loss, has_aux=True)
    (loss, (step_metrics, model_state)), grads = grad_fn(
        state.params, state.model_state, state.extra, batch, loss_rng)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    new_state = state.replace(step=state.step + 1, params=params, model_state=model_state,
                              opt_state=opt_state)
    new_state = averaging.update(config, task, new_state, batch,
                                 jax.random.fold_in(loss_rng, 1))
    new_state = task.after_update(new_state)
    # 'loss' is always the differentiated scalar: the NaN guard below reads it.
    step_metrics = {**step_metrics, 'loss': loss, 'learning_rate': schedule(state.step),
                    'grad_norm': optax.tree.norm(grads)}
    return new_state, step_metrics

  return train_step


def attach_example_ids(loader, mesh) -> None:
  """Makes the device loader serve each example's index as batch['example_id'].

  For tasks whose augmentation depends on the example's identity across epochs (airbench's
  alternating flip); they set `wants_example_ids = True` and also get batch['step'].
  """
  if not isinstance(getattr(loader, 'arrays', None), dict):
    raise ConfigError("this task needs example ids, which only data.loader='device' serves")
  loader.arrays['example_id'] = jax.device_put(
      np.arange(loader.num_examples, dtype=np.int32), parallel.replicated(mesh))


def scan_steps(train_step, num_steps: int):
  """`num_steps` consecutive train steps as one function; metrics stacked on a leading axis.

  The inputs are the same for every step (the device loader's resident arrays), so they are
  closed over by the scan rather than scanned.
  """
  def multi_step(state, inputs):
    return jax.lax.scan(lambda s, _: train_step(s, inputs), state, None, length=num_steps)
  return multi_step


def _next_boundary(step: int, total_steps: int, *periods: int) -> int:
  """The first step after `step` at which the loop must look at the state (log, eval, save)."""
  candidates = [total_steps]
  for period in periods:
    if period:
      candidates.append((step // period + 1) * period)
  return min(candidates)


def _average(buffer: list[dict]) -> dict[str, float]:
  """Mean of each metric over the buffered steps, fetched from the device in one transfer."""
  values = jax.device_get(buffer)
  # Entries from multi-step calls hold one value per step; every step weighs the same.
  return {k: float(np.mean(np.concatenate([np.ravel(v[k]) for v in values])))
          for k in values[0]}


def open_data(config):
  """(training data, DataInfo). An evaluation-only run (total_steps=0 from init_checkpoint)
  takes the DataInfo saved with that run and reads no training split: (None, info)."""
  if config.total_steps == 0 and config.init_checkpoint:
    info = inference.stored_data_info(config.init_checkpoint)
    if info is not None:
      return None, info
  return open_train_data(config)


@dataclasses.dataclass
class Parts:
  """What the loop is built from; `build_parts` makes them for `run` and for benchmarks."""
  task: Any
  tx: optax.GradientTransformation
  schedule: optax.Schedule
  rng: jax.Array
  state: TrainState  # Freshly initialised, sharded.
  shardings: Any


def build_parts(config, train_data, info, mesh, total_steps: int) -> Parts:
  """Task (prepared with the training images), optimizer, schedule and initial sharded state."""
  task = build_task(config, info)
  # Data-dependent initialisation (e.g. a whitening stem) sees the training images first; an
  # evaluation-only run without training data takes every variable from its checkpoint.
  if train_data is not None:
    task.prepare(getattr(train_data, 'images', None))
  rng = jax.random.key(config.seed)
  abstract_params = jax.eval_shape(lambda r: task.init_variables(r)[0], rng)
  schedule = optim.build_schedule(config, total_steps)
  tx = optim.build_optimizer(config, schedule, task.trainable_labels(abstract_params))

  def init_state(rng):
    params_rng, extra_rng = jax.random.split(rng)
    params, model_state = task.init_variables(params_rng)
    return TrainState(
        step=jnp.zeros((), jnp.int32), params=params, model_state=dict(model_state),
        opt_state=tx.init(params), ema_params=params if averaging.enabled(config) else None,
        ema_model_state=dict(model_state) if averaging.keeps_model_state(config) else None,
        extra=task.init_extra(extra_rng, params, model_state))

  abstract_state = jax.eval_shape(init_state, rng)
  shardings = parallel.state_shardings(abstract_state, config.param_sharding, mesh)
  # Never materialised replicated: each device creates only its shard.
  state = jax.jit(init_state, out_shardings=shardings)(rng)
  return Parts(task=task, tx=tx, schedule=schedule, rng=rng, state=state, shardings=shardings)


def run(config: ml_collections.ConfigDict, workdir: str,
        devices: Optional[list[jax.Device]] = None) -> dict[str, Any]:
  """Trains for config.total_steps (or num_epochs), evaluating and checkpointing; resumes from
  `workdir` when it holds checkpoints. Returns the final summary (also in summary.json).

  `devices` restricts the mesh to some devices (default: all). One run at a time per workdir:
  a second one ends with a WorkdirLockedError naming the first.
  """
  config_lib.validate(config)
  compilation_cache.enable()  # Before anything compiles: a rerun loads its executables.
  if jax.process_index() != 0:  # Process 0 holds the lock for the whole job.
    return _run(config, workdir, devices)
  with workdir_lib.lock(workdir):
    return _run(config, workdir, devices)


def _run(config: ml_collections.ConfigDict, workdir: str,
         devices: Optional[list[jax.Device]]) -> dict[str, Any]:
  """`run` with the workdir locked."""
  os.makedirs(workdir, exist_ok=True)
  # Before any work: a run that cannot save would otherwise only fail at its first checkpoint.
  workdir_lib.ensure_writable(checkpoint_lib.checkpoint_dir(workdir), 'checkpoint folder')
  is_main = jax.process_index() == 0

  # ---------------------------------------------------------------- mesh
  mesh = parallel.make_mesh(config.mesh, devices)
  log.info('devices: %d x %s; mesh %s', mesh.size, mesh.devices.flat[0].device_kind,
           dict(mesh.shape))

  # ---------------------------------------------------------------- data
  train_data, info = open_data(config)
  if is_main:
    inference.save_data_info(info, workdir)  # Lets tools rebuild the task without the data.
  parallel.check_batch_size(config.batch_size, mesh)
  steps_per_epoch = max(info.num_train_examples // config.batch_size, 1)
  total_steps = total_steps_for(config, steps_per_epoch)
  loader = build_train_loader(config, train_data, mesh) if total_steps else None

  # ---------------------------------------------------------------- task, optimizer, state
  parts = build_parts(config, train_data, info, mesh, total_steps)
  task, tx, schedule, rng = parts.task, parts.tx, parts.schedule, parts.rng
  state, shardings = parts.state, parts.shardings
  num_params = sum(math.prod(x.shape) for x in jax.tree.leaves(state.params))
  log.info('model %s: %.2fM parameters', config.model.name, num_params / 1e6)
  if loader is not None and getattr(task, 'wants_example_ids', False):
    attach_example_ids(loader, mesh)

  # ---------------------------------------------------------------- resume or initialise
  checkpointer = checkpoint_lib.Checkpointer(checkpoint_lib.checkpoint_dir(workdir),
                                             keep=config.keep_checkpoints,
                                             async_save=config.async_checkpointing)
  restored = checkpointer.restore_latest(state)
  if restored is not None:
    state, meta, _ = restored
    if meta.get('batch_size') != config.batch_size or meta.get('seed') != config.seed:
      log.warning('resuming with batch_size/seed %s/%s, the checkpoint used %s/%s: the data '
                  'order differs from the original run', config.batch_size, config.seed,
                  meta.get('batch_size'), meta.get('seed'))
    log.info('resumed from step %d in %s', int(state.step), checkpointer.directory)
  elif config.init_checkpoint:
    raw, from_step = checkpoint_lib.load_pretrained(config.init_checkpoint)
    if config.get('init_weights', 'plain') == 'ema':  # E.g. evaluating another run's EMA.
      raw = {**raw, 'params': checkpoint_lib.choose_weights(
          raw, True, what=f'init_weights=ema: {config.init_checkpoint}')[0]}
    params, model_state = task.from_pretrained(state.params, state.model_state, raw)
    # Fresh buffers for every part (params, model state, EMA): the step donates the state, and a
    # buffer shared by two parts (e.g. a teacher copied from the weights) cannot be donated twice.
    params = jax.device_put(params, shardings.params, may_alias=False)
    state = state.replace(
        params=params,
        model_state=jax.device_put(model_state, shardings.model_state, may_alias=False),
        ema_params=(jax.device_put(params, shardings.params, may_alias=False)
                    if averaging.enabled(config) else None),
        ema_model_state=(jax.device_put(model_state, shardings.model_state, may_alias=False)
                         if averaging.keeps_model_state(config) else None),
        # Task state made from the starting weights (MIRO's frozen network, lookahead's slow
        # weights) is made from the loaded ones.
        extra=jax.device_put(task.init_extra(jax.random.split(rng)[1], params, model_state),
                             shardings.extra, may_alias=False))
    log.info('initialised from %s (step %d)', config.init_checkpoint, from_step)
  start_step = int(state.step)
  if is_main:
    # Only now is the run known to fit this workdir (data found, checkpoints compatible): a run
    # that fails earlier leaves the workdir's record of itself as it was.
    workdir_lib.write_text(os.path.join(workdir, 'config.json'),
                           config.to_json_best_effort(indent=2))
    metrics_lib.drop_rows_after(os.path.join(workdir, 'metrics.jsonl'), start_step)

  # ---------------------------------------------------------------- train step
  train_step = build_train_step(config, task, loader, tx, schedule, rng)
  k = steps_per_call(config)
  step_fns = {}

  def step_fn(num_steps: int):
    """The jitted function running `num_steps` steps per call (compiled once per count)."""
    if num_steps not in step_fns:
      fn = train_step if num_steps == 1 else scan_steps(train_step, num_steps)
      step_fns[num_steps] = jax.jit(fn, out_shardings=(shardings, parallel.replicated(mesh)),
                                    donate_argnums=(0,))
    return step_fns[num_steps]

  # ---------------------------------------------------------------- evaluators
  evaluators = build_evaluators(config, task, mesh, workdir=workdir)
  writer = metrics_lib.MetricWriter(workdir, tensorboard=config.get('tensorboard', False))

  uses_average = {name: averaging.evaluator_uses_average(config, name) for name in evaluators}

  def evaluate(state, step) -> dict[str, float]:
    results = {}
    for name, evaluator in evaluators.items():
      t0 = time.perf_counter()
      for metric, value in evaluator.run(state.eval_variables(uses_average[name])):
        results[f'{name}/{metric}'] = value
      results[f'{name}/seconds'] = time.perf_counter() - t0
    if results:
      writer.write(step, results)
      log.info('step %d: %s', step, {k: round(v, 4) for k, v in results.items()})
    return results

  # ---------------------------------------------------------------- loop
  progress = metrics_lib.Progress(total_steps, start_step, enabled=config.progress_bar)
  buffer: list[dict] = []
  last_log_time, last_log_step = time.perf_counter(), start_step
  throughputs = []
  train_metrics: dict[str, float] = {}
  eval_results: dict[str, float] = {}

  def non_finite(what: str) -> NonFiniteLossError:
    saved = checkpointer.steps()  # Every one of them finite: see `stop_if_non_finite`.
    return NonFiniteLossError(
        f'{what}; no checkpoint was written after it (last good: '
        f'{saved[-1] if saved else "none"}). Lower the learning rate or check the data.')

  def stop_if_non_finite(state, step: int) -> None:
    """A checkpoint never holds NaN/inf: it would replace (rotate out) the good ones."""
    bad = checkpoint_lib.first_non_finite(state.replace(extra=None))
    if bad is not None:
      raise non_finite(f'{bad} held non-finite values at step {step}')

  def flush(step: int) -> dict[str, float]:
    """Fetches buffered metrics; stops the run at a non-finite loss or gradient norm."""
    nonlocal last_log_time, last_log_step
    if not buffer:
      return {}
    averaged = _average(buffer)
    buffer.clear()
    for key, name in (('loss', 'the training loss'), ('grad_norm', 'the gradient norm')):
      if not math.isfinite(averaged.get(key, 0.0)):
        raise non_finite(f'{name} became {averaged[key]} between steps {last_log_step} and {step}')
    now = time.perf_counter()
    examples_per_sec = (step - last_log_step) * config.batch_size / (now - last_log_time)
    if last_log_step != start_step:  # The first interval includes compilation.
      throughputs.append(examples_per_sec)
    last_log_time, last_log_step = now, step
    record = {f'train/{k}' if k not in ('learning_rate', 'grad_norm') else k: v
              for k, v in averaged.items()}
    record.update(epoch=step / steps_per_epoch, examples_per_sec=examples_per_sec)
    writer.write(step, record)
    return {**averaged, 'examples_per_sec': examples_per_sec}

  try:
    with jax.set_mesh(mesh):
      step = start_step
      while step < total_steps:
        # Never step over a log/eval/checkpoint boundary inside one call.
        num_steps = min(k, _next_boundary(step, total_steps, config.log_every_steps,
                                          config.eval_every_steps,
                                          config.checkpoint_every_steps) - step)
        state, step_metrics = step_fn(num_steps)(state, loader.inputs(step))
        buffer.append(step_metrics)
        done = step = step + num_steps
        is_last = done == total_steps
        if done % config.log_every_steps == 0 or is_last:
          train_metrics = flush(done)
          progress.update_to(done, **{k: v for k, v in train_metrics.items()
                                      if k in ('loss', 'accuracy', 'examples_per_sec')})
        if config.eval_every_steps and done % config.eval_every_steps == 0 and not is_last:
          evaluate(state, done)
        if (config.checkpoint_every_steps and done % config.checkpoint_every_steps == 0) or is_last:
          flush(done)
          stop_if_non_finite(state, done)
          checkpointer.save(done, state, {'step': done, 'seed': config.seed,
                                          'batch_size': config.batch_size,
                                          'examples_seen': done * config.batch_size})
      eval_results = evaluate(state, int(state.step))
  finally:
    progress.close()
    writer.close()
    checkpointer.close()
    if loader is not None:
      loader.close()

  # ---------------------------------------------------------------- summary
  summary = {
      **eval_results,
      **{f'train/{k}': v for k, v in train_metrics.items() if k in ('loss', 'accuracy')},
      'steps': int(state.step),
      'epochs': round(int(state.step) / steps_per_epoch, 2),
      'examples_per_sec': round(float(np.median(throughputs)), 1) if throughputs else None,
      'devices': f'{mesh.size} x {mesh.devices.flat[0].device_kind}',
      'parameters': num_params,
  }
  if is_main:
    with open(os.path.join(workdir, 'summary.json'), 'w') as f:
      json.dump(summary, f, indent=2)
    if config.plot and os.path.exists(writer.path):
      metrics_lib.plot_curves(writer.path, os.path.join(workdir, 'metrics.png'))
  return summary
