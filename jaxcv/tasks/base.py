"""The task protocol: what the single training loop needs to know about an objective.

A task = model + loss + predict functions (scenic's "task = model + loss + metrics"). The loop
owns the optimizer, EMA, sharding, checkpoints and logging; a task owns only what differs between
objectives, and extra state (a frozen teacher, a discriminator, ...) travels in `TrainState.extra`
instead of in a second trainer.
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Mapping, Optional

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from jaxcv import models
from jaxcv.data import augment as augment_lib
from jaxcv.data.dataset import DataInfo
from jaxcv.errors import ConfigError

log = logging.getLogger(__name__)

Metrics = dict[str, jax.Array]
PredictFn = Callable[[Any, jax.Array], Any]


@flax.struct.dataclass
class TrainState:
  """Everything that changes during training, as one pytree (checkpointed and sharded whole)."""
  step: jax.Array
  params: Any
  model_state: Any  # Mutable model collections, e.g. {'batch_stats': ...}; {} when none.
  opt_state: Any
  ema_params: Any = None  # Average of params (EMA or uniform: jaxcv/averaging.py), when kept.
  extra: Any = None  # Task-owned state: frozen teacher, discriminator, ...
  # The averaged params' own model state (BatchNorm statistics refreshed for them); None: they
  # are evaluated with `model_state`.
  ema_model_state: Any = None

  def eval_variables(self, use_ema: bool = True) -> dict:
    if use_ema and self.ema_params is not None:
      model_state = self.model_state if self.ema_model_state is None else self.ema_model_state
      return {'params': self.ema_params, **model_state}
    return {'params': self.params, **self.model_state}


def _merge(tree: dict, override: Mapping) -> dict:
  """`tree` with the leaves in `override` replaced (nested dicts, same paths and shapes)."""
  out = dict(tree)
  for key, value in override.items():
    if isinstance(value, Mapping):
      out[key] = _merge(out.get(key, {}), value)
    else:
      if key in out and jnp.shape(out[key]) != jnp.shape(value):
        raise ConfigError(f'data_init gives {key!r} shape {jnp.shape(value)}, the model has '
                          f'{jnp.shape(out[key])}')
      out[key] = jnp.asarray(value, jnp.result_type(out[key]) if key in out else None)
  return out


def _shapes_by_path(tree) -> dict[str, tuple]:
  leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
  return {jax.tree_util.keystr(path): tuple(jnp.shape(leaf)) for path, leaf in leaves}


def _fresh_head_if_classes_differ(params, pretrained_params):
  """`pretrained_params` with this model's `head` when theirs is missing or of other shapes."""
  if not (isinstance(params, Mapping) and 'head' in params
          and isinstance(pretrained_params, Mapping)):
    return pretrained_params
  theirs = pretrained_params.get('head')
  if theirs is not None and _shapes_by_path(theirs) == _shapes_by_path(params['head']):
    return pretrained_params
  log.warning('init_checkpoint has %s; this model\'s head %s is freshly initialised',
              'no classifier head' if theirs is None else
              f'a head of shapes {sorted(_shapes_by_path(theirs).values())}',
              sorted(_shapes_by_path(params['head']).values()))
  return {**pretrained_params, 'head': params['head']}


class Task:
  """Base class; subclasses implement `loss` and usually `predict_fns`."""

  # True: the loop adds batch['example_id'] (index into the training split) and batch['step'];
  # for augmentations that follow an example across epochs (device loader only).
  wants_example_ids: bool = False

  def __init__(self, config: ml_collections.ConfigDict, info: DataInfo):
    self.config = config
    self.info = info
    self.model = self.build_model()
    self._augment = augment_lib.build(config.data.augment)

  # --- model -------------------------------------------------------------------------------
  def build_model(self) -> nn.Module:
    dtype = jnp.bfloat16 if self.config.dtype == 'bfloat16' else jnp.float32
    return models.build_model(self.config.model.name, num_classes=self.info.num_classes,
                              dtype=dtype, **self.config.model.kwargs.to_dict())

  def prepare(self, train_images: Optional[Any]) -> None:
    """Called by the loop once, before initialisation, with the training images.

    `train_images` is the uint8 [N, H, W, C] training split when it is held in memory (the
    device loader), else None. The default gives models with a `data_init(images)` method
    (e.g. a patch-whitening stem) the chance to compute variables from data; `init_variables`
    then uses them in place of the random ones.
    """
    data_init = getattr(self.model, 'data_init', None)
    self._data_variables = None
    if data_init is not None:
      if train_images is None:
        raise ConfigError(f'model {self.config.model.name!r} initialises from training data '
                          "and needs data.loader='device'")
      self._data_variables = data_init(train_images)

  def init_variables(self, rng: jax.Array) -> tuple[Any, Mapping[str, Any]]:
    """(params, other collections) from a dummy batch; traced under jax.eval_shape / jit."""
    dummy = jnp.zeros((1, *self.info.image_shape), jnp.float32)
    params_rng, dropout_rng = jax.random.split(rng)
    variables = self.model.init({'params': params_rng, 'dropout': dropout_rng}, dummy,
                                train=False)
    variables = flax.core.unfreeze(variables)
    variables.pop('intermediates', None)  # Sown features are outputs, not state.
    for collection, values in (getattr(self, '_data_variables', None) or {}).items():
      variables[collection] = _merge(variables.get(collection, {}), values)
    params = variables.pop('params')
    return params, variables

  def init_extra(self, rng: jax.Array, params: Any, model_state: Any) -> Any:
    """Task-owned state beyond the model (default: none)."""
    del rng, params, model_state
    return None

  def from_pretrained(self, params, model_state, pretrained: Mapping[str, Any]):
    """(params, model_state) to start from, given another run's raw checkpointed state.

    The default takes the whole model and insists the structures match, except the classifier
    head: a checkpoint of another class count, or a backbone saved without a head (converted
    self-supervised weights), leaves this model's fresh head in place. Tasks that add or drop
    other parts (a disentangler) override this.
    """
    new_params = _fresh_head_if_classes_differ(params, pretrained['params'])
    new_model_state = pretrained.get('model_state') or {}
    for what, old, new in (('params', params, new_params),
                           ('model_state', model_state, new_model_state)):
      expected, found = _shapes_by_path(old), _shapes_by_path(new)
      if expected != found:
        diff = sorted(k for k in expected.keys() | found.keys()
                      if expected.get(k) != found.get(k))
        raise ConfigError(f'init_checkpoint {what} do not match this model at '
                          f'{len(diff)} entries, e.g. ' + ', '.join(
                              f'{k}: model {expected.get(k)} vs checkpoint {found.get(k)}'
                              for k in diff[:3]))
    return new_params, new_model_state

  # --- training ----------------------------------------------------------------------------
  def augment(self, rng: jax.Array, batch: Mapping[str, jax.Array]) -> dict:
    """On-device training augmentation of the batch's images (config.data.augment)."""
    return {**batch, 'image': self._augment(rng, batch['image'])}

  def loss(self, params, model_state, extra, batch, rng) -> tuple[jax.Array, tuple[Metrics, Any]]:
    """Returns (scalar loss, (metrics, new model_state)). Differentiated w.r.t. params."""
    raise NotImplementedError

  def trainable_labels(self, params) -> Optional[Any]:
    """Optional pytree of 'train'/'freeze' labels for the optimizer (default: train all)."""
    del params
    return None

  def after_update(self, state: TrainState) -> TrainState:
    """Hook after each optimizer update, e.g. to refresh task-owned extra state."""
    return state

  def refresh_model_state(self, params, model_state, batch, rng) -> dict:
    """`model_state` (BatchNorm statistics) after a train-mode forward pass of `params` on the
    batch, the parameters unchanged: how averaged weights keep statistics of their own
    (config.averaging.batch_stats, jaxcv/averaging.py)."""
    _, new_model_state = self.model.apply(
        {'params': params, **model_state}, batch['image'], train=True, rngs={'dropout': rng},
        mutable=list(model_state.keys()))
    return dict(new_model_state)

  # --- evaluation --------------------------------------------------------------------------
  def predict_fns(self) -> dict[str, PredictFn]:
    """Named functions (variables, float images in [0, 1]) -> outputs, for evaluators."""
    return {}

  def export_classifier(self, variables: Mapping[str, Any]) -> tuple[nn.Module, dict]:
    """(model, variables) of a plain classifier equivalent to this task's network, for tools
    (OOD detection, feature spaces, attacks; `jaxcv.inference`). The default: the task's model
    as it is, when it is a classifier (has `head` parameters). Tasks whose parameters are not a
    plain network (AFD's disentangler) override this."""
    params = variables.get('params')
    if not isinstance(params, Mapping) or 'head' not in params:
      raise ConfigError(f'task {type(self).__name__} ({self.config.task!r}) has no classifier '
                        'to export: its parameters have no `head`')
    return self.model, dict(variables)
