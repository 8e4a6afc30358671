"""Adversarial training as tasks of the single loop: PGD-AT (Madry et al. 2018) and TRADES
(Zhang et al. 2019), from scratch or fine-tuning (`config.init_checkpoint`).

The training attack runs inside the jitted step (`lax.fori_loop`), on the current parameters with
gradients stopped and, by default, BatchNorm in eval mode (running statistics, nothing updated);
only the final train-mode forward on the adversarial batch updates BatchNorm and is
differentiated. Settings live in `config.adversarial` (`add_adversarial_config`).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
import optax

from jaxcv import attacks
from jaxcv import inference
from jaxcv.errors import ConfigError
from jaxcv.tasks import register
from jaxcv.tasks.base import TrainState
from jaxcv.losses import cross_entropy
from jaxcv.tasks.classification import ClassificationTask, classification_metrics


def add_adversarial_config(config: ml_collections.ConfigDict, eps: float = 8 / 255,
                           step_size: float = 2 / 255, steps: int = 10, *, norm: str = 'linf',
                           random_start: bool = True, bn_mode: str = 'eval',
                           trades_beta: float = 6.0, ema_warmup: bool = False,
                           init_from: str = 'params') -> ml_collections.ConfigDict:
  """Adds the `config.adversarial` section the adversarial tasks read; returns the config.

  bn_mode: 'eval' (running statistics) or 'train' (statistics of the attacked batch) for the
    training attack. ema_warmup: EMA decay min(ema_decay, (n + 1) / (n + 10)) at update n, as
    AFD's code does (needs ema_decay > 0). init_from: 'params', 'ema' or 'auto' (EMA when the run
    kept them): which weights of `init_checkpoint` to start from (or evaluate, total_steps=0).
  """
  config.adversarial = ml_collections.ConfigDict({
      'eps': float(eps), 'step_size': float(step_size), 'steps': int(steps), 'norm': norm,
      'random_start': bool(random_start), 'bn_mode': bn_mode, 'trades_beta': float(trades_beta),
      'ema_warmup': bool(ema_warmup), 'init_from': init_from,
  })
  return config


# adversarial.init_from -> the weights jaxcv.inference loads.
_INIT_WEIGHTS = {'params': 'plain', 'ema': 'ema', 'auto': 'auto'}


def _check_config(config) -> None:
  if 'adversarial' not in config:
    raise ConfigError(f'task {config.task!r} needs a config.adversarial section: call '
                      'jaxcv.tasks.adversarial.add_adversarial_config(config) in the config file')
  a = config.adversarial
  checks = [
      (a.norm in attacks.common.NORMS, f'adversarial.norm must be one of {attacks.common.NORMS}'),
      (a.eps >= 0 and a.step_size >= 0 and a.steps >= 0,
       'adversarial.eps, step_size and steps must be >= 0'),
      (a.bn_mode in ('eval', 'train'), "adversarial.bn_mode must be 'eval' or 'train'"),
      (a.init_from in _INIT_WEIGHTS,
       f"adversarial.init_from must be one of {', '.join(_INIT_WEIGHTS)}"),
      (not a.ema_warmup or config.ema_decay > 0, 'adversarial.ema_warmup needs ema_decay > 0'),
      (not config.data.get('mixing'), 'adversarial tasks train on integer labels: unset '
       'data.mixing'),
  ]
  for ok, message in checks:
    if not ok:
      raise ConfigError(f'{message}; got {a.to_dict()}')


def warmup_ema(state: TrainState, ema_decay: float) -> TrainState:
  """Turns the loop's constant-decay EMA update into decay d_n = min(d, (n + 1) / (n + 10)).

  The loop computed e' = d e + (1 - d) p; then d_n e + (1 - d_n) p = e' + (d_n - d) / d (e' - p)
  exactly, so no copy of the previous average is needed.
  """
  n = (state.step - 1).astype(jnp.float32)  # The update just applied is update number n.
  decay_n = jnp.minimum(ema_decay, (n + 1) / (n + 10))
  factor = (decay_n - ema_decay) / ema_decay
  ema = jax.tree.map(lambda e, p: e + factor * (e - p), state.ema_params, state.params)
  return state.replace(ema_params=ema)


class AdversarialTask(ClassificationTask):
  """Shared pieces: the training attack, the EMA warm-up, starting from other runs."""

  def __init__(self, config, info):
    _check_config(config)
    super().__init__(config, info)

  # --- attack ------------------------------------------------------------------------------
  def eval_logits(self, params, model_state, images) -> jax.Array:
    """The logits attacks target (eval-mode forward of the deployed network)."""
    return self.model.apply({'params': params, **model_state}, images, train=False)

  def attack_predict_fn(self, params, model_state) -> attacks.common.PredictFn:
    params = jax.lax.stop_gradient(params)
    if self.config.adversarial.bn_mode == 'eval':
      return lambda images: self.eval_logits(params, model_state, images)
    return attacks.model_predict_fn(self.model, {'params': params, **model_state},
                                    bn_train_mode=True)

  def attack(self, params, model_state, images, labels, rng) -> jax.Array:
    a = self.config.adversarial
    return attacks.pgd(self.attack_predict_fn(params, model_state), images, labels, rng,
                       eps=a.eps, step_size=a.step_size, steps=a.steps, norm=a.norm,
                       random_start=a.random_start)

  def train_forward(self, params, model_state, images, rng):
    """Train-mode logits and the updated BatchNorm statistics."""
    logits, new_state = self.model.apply(
        {'params': params, **model_state}, images, train=True, rngs={'dropout': rng},
        mutable=list(model_state.keys()))
    return logits, dict(new_state)

  # --- loop hooks ----------------------------------------------------------------------------
  def after_update(self, state: TrainState) -> TrainState:
    if self.config.adversarial.ema_warmup and state.ema_params is not None:
      state = warmup_ema(state, self.config.ema_decay)
    return state

  def from_pretrained(self, params, model_state, pretrained):
    """Starts from any classifier run exported as a plain network (an AFD run with D1 folded
    into the head), its EMA weights if asked."""
    del pretrained  # Read again through the run's own task, which knows how to export it.
    source, source_state = inference.classifier_variables(
        self.config.init_checkpoint, _INIT_WEIGHTS[self.config.adversarial.init_from])
    return super().from_pretrained(
        params, model_state, {'params': source, 'model_state': source_state})

  def predict_fns(self):
    fns = super().predict_fns()

    def features(variables, images):
      return self.model.apply(variables, images, train=False, return_features=True)
    return {**fns, 'features': features}


@register('pgd_at')
class PGDATTask(AdversarialTask):
  """Madry et al.: cross-entropy on PGD examples only."""

  def loss(self, params, model_state, extra, batch, rng):
    del extra
    attack_rng, dropout_rng = jax.random.split(rng)
    x_adv = self.attack(params, model_state, batch['image'], batch['label'], attack_rng)
    logits, new_state = self.train_forward(params, model_state, x_adv, dropout_rng)
    loss = jnp.mean(cross_entropy(logits, batch['label'], self.config.label_smoothing))
    return loss, ({'loss': loss, **classification_metrics(logits, batch['label'])}, new_state)


def _kl_to(target_probs: jax.Array):
  """Per-example KL(target || softmax(logits)): TRADES' attack loss."""
  def kl(logits, _):
    log_probs = jax.nn.log_softmax(logits.astype(jnp.float32), -1)
    return jnp.sum(target_probs * (jnp.log(target_probs + 1e-12) - log_probs), -1)
  return kl


@register('trades')
class TRADESTask(AdversarialTask):
  """Zhang et al. 2019: CE(f(x), y) + beta * KL(f(x) || f(x')), x' maximising the KL from
  x + N(0, 0.001^2) (eval-mode attack, as the reference code). Two train-mode forwards, clean
  then adversarial, update BatchNorm in that order, like the reference."""

  def loss(self, params, model_state, extra, batch, rng):
    del extra
    a = self.config.adversarial
    attack_rng, dropout_rng = jax.random.split(rng)
    images, labels = batch['image'], batch['label']
    clean_probs = jax.nn.softmax(
        jax.lax.stop_gradient(self.eval_logits(params, model_state, images)), -1)
    x_adv = attacks.pgd(self.attack_predict_fn(params, model_state), images, labels, attack_rng,
                        eps=a.eps, step_size=a.step_size, steps=a.steps, norm=a.norm,
                        loss=_kl_to(clean_probs), random_start_std=0.001)
    logits, state_after_clean = self.train_forward(params, model_state, images, dropout_rng)
    adv_logits, new_state = self.train_forward(params, state_after_clean, x_adv, dropout_rng)
    natural = jnp.mean(cross_entropy(logits, labels, self.config.label_smoothing))
    probs = jax.nn.softmax(logits.astype(jnp.float32), -1)
    robust = jnp.mean(optax.kl_divergence(jax.nn.log_softmax(adv_logits.astype(jnp.float32)),
                                          probs))
    loss = natural + a.trades_beta * robust
    metrics = {'loss': loss, 'natural_loss': natural, 'robust_kl': robust,
               **classification_metrics(logits, labels),
               'adv_accuracy': jnp.mean(jnp.argmax(adv_logits, -1) == labels)}
    return loss, (metrics, new_state)
