"""ERM++ (Teterwak et al., WACV 2025, arXiv 2304.01973; official code piotr-teterwak/erm_plusplus)
on DomainBed's protocol: the task and the pieces the table's rows are built from.

The recipe is a chain of runs of the single loop, each component switchable:
  - linear probing first (WS): a `probe` run trains the head alone (`erm_pp.trainable='^head/'`;
    the optimizer zeroes every other update, so the backbone stays bit-identical), then the full
    run starts from it (`init_checkpoint`) with a fresh optimizer;
  - model parameter averaging (MPA): `config.averaging.kind='uniform'` from a start step, kept
    by the loop (jaxcv/averaging.py), with the averaged weights' own BatchNorm statistics
    refreshed on every batch (`averaging.batch_stats='refresh'`); evaluation and selection use
    the averaged weights, the trained ones are logged beside them (`evals.*_plain`);
  - training length then full data (LT + FD): pass 1 trains on the source envs' `in` parts and
    is evaluated on their `out` parts; `selected_step` reads the best validation step from its
    metrics.jsonl (validation keys only); pass 2 trains on `train_full` (the source envs whole,
    never the test env) for that many steps;
  - unfrozen BatchNorm (UBN): `erm_pp.freeze_bn=False` (DomainBed's historical freeze_bn=True
    runs BN layers on their running statistics and never updates them);
  - attention-only tuning for ViTs: `erm_pp.trainable` is a regex on parameter paths
    (ATTENTION_ONLY);
  - initialisation from another run: `init_checkpoint` with `erm_pp.fresh_head` (a backbone
    pretrained on another dataset, a new head for this one).
  - MIRO, the optional regulariser (`erm_pp.miro`, miro.py): the features of the starting network,
    frozen in `TrainState.extra`, anchor the trained network's stage outputs; the variance
    encoders are `params['miro']`, trained at `miro_lr_mult` x the lr.
See docs/erm_pp.md for what departs from the paper.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Mapping, Optional

import jax
import jax.numpy as jnp
import ml_collections

from jaxcv import parallel
from jaxcv.domain_generalization import miro, selection
from jaxcv.errors import ConfigError
from jaxcv.tasks import TASKS
from jaxcv.losses import cross_entropy
from jaxcv.tasks.classification import ClassificationTask, classification_metrics

HEAD_ONLY = r'^head/'
# Parameters of ViT attention blocks (jaxcv/models/vit.py names them encoderN/attn/...) and the
# head: the official code freezes every featurizer parameter whose name lacks 'attn'.
ATTENTION_ONLY = r'(^|/)attn/|^head/'


def add_erm_pp_config(config: ml_collections.ConfigDict, *, trainable: str = '',
                      freeze_bn: bool = False, fresh_head: bool = False, use_miro: bool = False,
                      miro_weight: float = miro.WEIGHT,
                      miro_lr_mult: float = miro.LR_MULT) -> ml_collections.ConfigDict:
  """Adds `config.erm_pp` and selects the task."""
  config.task = 'erm_pp'
  config.erm_pp = ml_collections.ConfigDict({
      'trainable': trainable,  # Regex on parameter paths ('' = all): what the optimizer moves.
      'freeze_bn': bool(freeze_bn),  # BN on running statistics, never updated (DomainBed's).
      'fresh_head': bool(fresh_head),  # init_checkpoint gives the backbone; the head is new.
      'miro': bool(use_miro),  # The MIRO regulariser (miro.py) on the model's stage outputs.
      'miro_weight': float(miro_weight),  # Its weight (`ld`).
  })
  if use_miro:  # The variance encoders' lr multiplier, as a parameter group.
    config.optimizer.param_groups = ((miro.PARAMS_PATTERN, float(miro_lr_mult), 1.0),
                                     *config.optimizer.get('param_groups', ()))
  return config


def trainable_mask(params: Any, pattern: str) -> Any:
  """'train' for parameters whose path ('conv1/kernel', 'head/bias') matches, else 'freeze'."""
  try:
    compiled = re.compile(pattern)
  except re.error as e:
    raise ConfigError(f'erm_pp.trainable regex {pattern!r}: {e}') from None
  labels = jax.tree_util.tree_map_with_path(
      lambda path, _: 'train' if compiled.search(parallel.path_to_str(path)) else 'freeze',
      params)
  if 'train' not in jax.tree.leaves(labels):
    raise ConfigError(f'erm_pp.trainable={pattern!r} matches no parameter of this model')
  return labels


class ERMPlusPlusTask(ClassificationTask):
  """Classification with ERM++'s switches (config.erm_pp); averaging is the loop's."""

  @property
  def uses_miro(self) -> bool:
    return bool(self.config.erm_pp.get('miro', False))

  def trainable_labels(self, params):
    pattern = self.config.erm_pp.trainable
    return trainable_mask(params, pattern) if pattern else None

  def _train_apply(self, params, model_state, images, rng, capture: bool = False):
    """(logits, new model state, stage features or {}) of a training forward pass."""
    frozen = bool(self.config.erm_pp.freeze_bn and model_state)
    # Frozen BN: the layers normalise with their running statistics and nothing updates them
    # (PyTorch's BN in eval mode inside a train-mode network). train=False also turns dropout
    # off, which DomainBed's networks do not use.
    mutable = ([] if frozen else list(model_state)) + (['intermediates'] if capture else [])
    model_params = {k: v for k, v in params.items() if k != miro.PARAMS_KEY}
    logits, updated = self.model.apply(
        {'params': model_params, **model_state}, images, train=not frozen,
        rngs={'dropout': rng}, mutable=mutable)
    updated = dict(updated)
    features = miro.stage_features(updated.pop('intermediates', {}))
    return logits, (model_state if frozen else updated), features

  def forward(self, params, model_state, batch, rng):
    logits, new_model_state, _ = self._train_apply(params, model_state, batch['image'], rng)
    return logits, new_model_state

  def refresh_model_state(self, params, model_state, batch, rng):
    if self.config.erm_pp.freeze_bn:
      return model_state  # Frozen statistics are never refreshed either.
    return super().refresh_model_state(params, model_state, batch, rng)

  # --- MIRO ----------------------------------------------------------------------------------
  def _stage_features(self, variables, images, train: bool = False):
    _, captured = self.model.apply(variables, images, train=train, mutable=['intermediates'])
    return miro.stage_features(captured['intermediates'])

  def init_variables(self, rng):
    params, model_state = super().init_variables(rng)
    if self.uses_miro:
      dummy = jnp.zeros((1, *self.info.image_shape), jnp.float32)
      features = self._stage_features({'params': params, **model_state}, dummy)
      if not features:
        raise ConfigError(f'erm_pp.miro: model {self.config.model.name!r} sows no '
                          'intermediates (stage outputs) to regularise')
      params = {**params, miro.PARAMS_KEY: miro.init_variance_params(features)}
    return params, model_state

  def init_extra(self, rng, params, model_state):
    """MIRO's frozen network: the starting weights (the loop calls this again after loading
    init_checkpoint, so a pretrained start is what stays frozen)."""
    del rng
    if not self.uses_miro:
      return None
    frozen = {k: v for k, v in params.items() if k != miro.PARAMS_KEY}
    return {'miro_frozen': {'params': frozen, **model_state}}

  def loss(self, params, model_state, extra, batch, rng):
    if not self.uses_miro:
      return super().loss(params, model_state, extra, batch, rng)
    logits, new_model_state, features = self._train_apply(
        params, model_state, batch['image'], rng, capture=True)
    task_loss = jnp.mean(cross_entropy(logits, batch['label'], self.config.label_smoothing))
    # The reference keeps the frozen network's BN in eval mode (URResNet.freeze_bn).
    pre_features = self._stage_features(extra['miro_frozen'], batch['image'], train=False)
    reg = miro.regulariser(features, pre_features, params[miro.PARAMS_KEY])
    loss = task_loss + self.config.erm_pp.miro_weight * reg
    metrics = {'loss': loss, 'miro_reg': reg, **classification_metrics(logits, batch['label'])}
    return loss, (metrics, new_model_state)

  def from_pretrained(self, params, model_state, pretrained: Mapping[str, Any]):
    # MIRO's encoders are this run's own: never taken from (or required of) the checkpoint.
    theirs = {k: v for k, v in pretrained['params'].items() if k != miro.PARAMS_KEY}
    ours = {k: v for k, v in params.items() if k != miro.PARAMS_KEY}
    if self.config.erm_pp.fresh_head:
      if 'head' not in params:
        raise ConfigError('erm_pp.fresh_head needs a model with a `head`')
      theirs = {**theirs, 'head': params['head']}
    new_params, new_model_state = super().from_pretrained(
        ours, model_state, {**pretrained, 'params': theirs})
    if miro.PARAMS_KEY in params:
      new_params = {**new_params, miro.PARAMS_KEY: params[miro.PARAMS_KEY]}
    return new_params, new_model_state


TASKS['erm_pp'] = ERMPlusPlusTask


# ---------------------------------------------------------------------------------------------
# Reading pass 1: the training length, and DomainBed's selection as a table row
# ---------------------------------------------------------------------------------------------

def _records(workdir: str | Path) -> list[dict]:
  path = Path(workdir) / 'metrics.jsonl'
  if not path.is_file():
    raise ConfigError(f'{workdir} has no metrics.jsonl: run the first pass before the second')
  with open(path) as f:
    return [json.loads(line) for line in f if line.strip()]


def selected_step(workdir: str | Path, val_key: str = selection.VAL_KEY) -> int:
  """The step with the best training-domain validation accuracy in the run at `workdir` (the
  earliest on ties): pass 2's length. Reads `val_key` only, never a test-environment metric."""
  records = selection.records_with(_records(workdir), (val_key,))
  if not records:
    raise ConfigError(f'{workdir}/metrics.jsonl has no {val_key!r}: evaluate the first pass on '
                      'the source environments\' out splits (evals.val)')
  return int(max(records, key=lambda r: r[val_key])['step'])


def select(workdir: str, run: str, method: str = selection.TRAINING_DOMAIN,
           weights: str = 'ema') -> dict[str, Any]:
  """A table row (jaxcv.sweep `fn`): DomainBed's selection within the finished run `run`.

  weights 'ema' reads the evaluators of the averaged model (val, test_in, test_out), 'plain'
  the trained model's (val_plain, ...). Returns the chosen step's `test_in/acc/mean` (what
  DomainBed reports), the validation value it maximised and the step.
  """
  del workdir
  suffix = {'ema': '', 'plain': '_plain'}.get(weights)
  if suffix is None:
    raise ConfigError(f"select: weights must be 'ema' or 'plain', got {weights!r}")
  keys = {'val_key': f'val{suffix}/acc/mean', 'test_key': f'test_in{suffix}/acc/mean',
          'oracle_key': f'test_out{suffix}/acc/mean'}
  found = selection.read_run(run, test_key=keys['test_key'])
  choice = selection.run_choice(found, method, **keys)
  if choice is None:
    raise ConfigError(f'{run}: no evaluations with {keys["val_key"]} and {keys["test_key"]}')
  return {'test_in/acc/mean': choice.test, 'selected/val': choice.val, 'selected/step': choice.step,
          'test_env': found.test_env, 'trial': found.trial, 'method': method}



def renamed(workdir: str, run: str, key: str, as_key: str = selection.TEST_KEY) -> dict[str, Any]:
  """A table row (jaxcv.sweep `fn`): metric `key` of the finished run `run`'s summary.json
  under the name `as_key`, e.g. pass 2's trained (not averaged) weights as ERM++ without MPA."""
  del workdir
  path = Path(run) / 'summary.json'
  if not path.is_file():
    raise ConfigError(f'{run} has no summary.json: the run has not finished')
  summary = json.loads(path.read_text())
  if key not in summary:
    raise ConfigError(f'{path} has no {key!r}; it has {sorted(summary)}')
  return {as_key: summary[key], 'selected/step': summary.get('steps')}
