"""AFD: adversarial fine-tuning with feature disentanglement (Zhou et al., AAAI 2025,
arXiv 2401.14707; official code changzhang777/AFD), and vAFT, its plain baseline.

Method and deviations: docs/afd.md (the method follows the official `tl+sl.py`).
On the pooled penultimate features f of the backbone, two bias-free linear maps initialised to
the identity: f1 = f D1 (intrinsic), f2 = stopgrad(f) D2 (confused); both go through the
classifier's head W. Per batch, x_adv = PGD on the eval-mode logits of the D1 path, then

  L_dis = alpha * CE(W f2, y~)          y~: the most likely wrong class of W f1
  L_cos = beta * mean cos(f1, f2)
  L_rob = CE(W f1, y) + gamma * (1 - mean cos(f1, f_nat))   f_nat: frozen natural model, clean x

Update rules (`config.afd.mode`):
  'clean' (default): all losses at the same parameters; D2 gets grad L_dis only, everything else
    grad(L_cos + L_rob) (W also grad L_dis if `dis_grad_to_classifier`).
  'code_faithful': the official code's three optimizers without zeroed gradients: D2 steps with
    g_dis; the rest takes two momentum-SGD steps with separate buffers, (g_cos + g_dis on W)
    then (g_cos + g_dis on W + g_rob), all gradients at the same parameters. Momentum SGD is
    linear in its gradient, so two buffers with the same hyperparameters add up to one buffer fed
    with the sum: one step with 2 g_cos + 2 g_dis(W) + g_rob, and weight decay counted twice on
    everything but D2. Both are routed here through one surrogate loss (gradient scaling with
    stop_gradient), so the loop's single optimizer applies them exactly; the only difference to
    sequential steps is that the second step's weight decay sees the weights before the first
    step (an O(lr^2 * wd) term).

The teacher (frozen natural model) travels in the model state under 'teacher', so that it is
checkpointed with the run and filled from `init_checkpoint` (or `afd.teacher_checkpoint`).
Inference uses the D1 path only; `fold_disentangler` folds D1 into the head (W' = D1 W) and gives
a plain network's parameters (`AFDTask.export_classifier`, used by `jaxcv.inference`).
"""

from __future__ import annotations

from typing import Any, Mapping

import jax
import jax.numpy as jnp
import ml_collections

from jaxcv import inference
from jaxcv.errors import ConfigError
from jaxcv.tasks import register
from jaxcv.tasks.adversarial import AdversarialTask
from jaxcv.tasks.classification import classification_metrics, cross_entropy

MODES = ('clean', 'code_faithful')
TEACHER = 'teacher'


def add_afd_config(config: ml_collections.ConfigDict, *, alpha: float = 0.05,
                   beta: float = 0.25, gamma: float = 25.0, mode: str = 'clean',
                   dis_grad_to_classifier: bool = False,
                   teacher_checkpoint: str = '') -> ml_collections.ConfigDict:
  """Adds `config.afd` (defaults: the official CIFAR-10 values; beta is `sigma` in the code)."""
  config.afd = ml_collections.ConfigDict({
      'alpha': float(alpha), 'beta': float(beta), 'gamma': float(gamma), 'mode': mode,
      'dis_grad_to_classifier': bool(dis_grad_to_classifier),
      'teacher_checkpoint': teacher_checkpoint,  # '' = the init_checkpoint.
  })
  return config


# ------------------------------------------------------------------ pure pieces (tested alone)

def cosine(a: jax.Array, b: jax.Array, eps: float = 1e-8) -> jax.Array:
  """Per-row cosine similarity, norms clamped at eps like torch's F.cosine_similarity."""
  a, b = a.astype(jnp.float32), b.astype(jnp.float32)
  norms = (jnp.maximum(jnp.linalg.norm(a, axis=-1), eps) *
           jnp.maximum(jnp.linalg.norm(b, axis=-1), eps))
  return jnp.sum(a * b, -1) / norms


def confusing_labels(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """The prediction where it is wrong, else the runner-up class: the most likely wrong class."""
  top2 = jax.lax.top_k(logits, 2)[1]
  return jnp.where(top2[:, 0] == labels, top2[:, 1], top2[:, 0])


def scale_gradient(tree: Any, scale: float) -> Any:
  """Same values; gradients multiplied by `scale` (0 stops them)."""
  if scale == 1.0:
    return tree
  return jax.tree.map(lambda p: scale * p + (1.0 - scale) * jax.lax.stop_gradient(p), tree)


def afd_losses(f: jax.Array, d1: jax.Array, d2: jax.Array, head_fn, f_nat: jax.Array,
               labels: jax.Array, *, alpha: float, beta: float, gamma: float,
               mode: str = 'clean', dis_grad_to_classifier: bool = False,
               label_smoothing: float = 0.0):
  """(surrogate loss whose gradient is the update rule of `mode`, dict of the true losses).

  `head_fn(scale)` returns logits = W feats + b as a function of feats, with W's gradient scaled.
  """
  f1 = f @ d1
  f2 = jax.lax.stop_gradient(f) @ d2  # The confused branch never reaches the backbone.
  logits1 = head_fn(1.0)(f1)
  if mode == 'code_faithful':
    dis_head_scale = 2.0  # W takes g_dis in both of the code's steps.
  else:
    dis_head_scale = 1.0 if dis_grad_to_classifier else 0.0
  logits2 = head_fn(dis_head_scale)(f2)
  confusing = confusing_labels(jax.lax.stop_gradient(logits1), labels)
  l_dis = alpha * jnp.mean(cross_entropy(logits2, confusing))
  # L_cos steps every parameter but D2: its gradient reaches f1 only.
  cos_12 = jnp.mean(cosine(f1, jax.lax.stop_gradient(f2)))
  l_cos = beta * cos_12
  align = 1.0 - jnp.mean(cosine(f1, jax.lax.stop_gradient(f_nat)))
  ce = jnp.mean(cross_entropy(logits1, labels, label_smoothing))
  l_rob = ce + gamma * align
  cos_weight = 2.0 if mode == 'code_faithful' else 1.0
  surrogate = l_dis + cos_weight * l_cos + l_rob
  parts = {'loss_dis': l_dis, 'loss_cos': l_cos, 'loss_rob': l_rob, 'adv_ce': ce,
           'align_distance': align, 'cos_f1_f2': cos_12,
           'confused_accuracy': jnp.mean(jnp.argmax(logits2, -1) == confusing),
           **classification_metrics(logits1, labels)}
  return surrogate, parts, logits1


def fold_disentangler(params: Mapping[str, Any]) -> dict:
  """Plain-model parameters with D1 folded into the head: W' = D1 W, so f W' = (f D1) W."""
  model = dict(params['model'])
  head = dict(model['head'])
  head['kernel'] = params['disentangler']['d1'] @ head['kernel']
  model['head'] = head
  return model


def is_disentangled(params: Mapping[str, Any]) -> bool:
  return isinstance(params, Mapping) and 'disentangler' in params and 'model' in params


# ------------------------------------------------------------------ the tasks

@register('afd')
class AFDTask(AdversarialTask):

  def __init__(self, config, info):
    if 'afd' not in config:
      raise ConfigError("task 'afd' needs a config.afd section: call "
                        'jaxcv.tasks.afd.add_afd_config(config) in the config file')
    if config.afd.mode not in MODES:
      raise ConfigError(f'afd.mode must be one of {MODES}, got {config.afd.mode!r}')
    if config.afd.mode == 'code_faithful' and config.optimizer.name != 'sgd':
      raise ConfigError("afd.mode='code_faithful' reproduces SGD optimizers; set "
                        f"optimizer.name='sgd' (got {config.optimizer.name!r})")
    super().__init__(config, info)
    self.feature_dim = self.model.feature_dim

  # --- variables: {'model': plain params, 'disentangler': {'d1', 'd2'}}, teacher in the state
  def init_variables(self, rng):
    params, model_state = super().init_variables(rng)
    eye = jnp.eye(self.feature_dim, dtype=jnp.float32)
    teacher = {'params': params, **model_state}
    return ({'model': params, 'disentangler': {'d1': eye, 'd2': eye}},
            {**model_state, TEACHER: teacher})

  @staticmethod
  def split_state(model_state):
    return {k: v for k, v in model_state.items() if k != TEACHER}, model_state[TEACHER]

  def from_pretrained(self, params, model_state, pretrained):
    if is_disentangled(pretrained['params']):  # Another AFD run: take all of it.
      return super(AdversarialTask, self).from_pretrained(params, model_state, pretrained)
    weights = 'ema' if self.config.adversarial.init_from == 'ema' else 'plain'
    own_state, _ = self.split_state(model_state)

    def plain_start(path, weights):
      source, source_state = inference.classifier_variables(path, weights)
      return super(AdversarialTask, self).from_pretrained(
          params['model'], own_state, {'params': source, 'model_state': source_state})

    plain, plain_state = plain_start(self.config.init_checkpoint, weights)
    teacher = {'params': plain, **plain_state}
    if self.config.afd.teacher_checkpoint:
      t_params, t_state = plain_start(self.config.afd.teacher_checkpoint, 'plain')
      teacher = {'params': t_params, **t_state}
    new_params = {'model': plain, 'disentangler': params['disentangler']}
    return new_params, {**plain_state, TEACHER: teacher}

  def export_classifier(self, variables):
    """The D1 path as a plain network: D1 folded into the head, the teacher dropped."""
    variables = dict(variables)
    params = variables.pop('params')
    variables.pop(TEACHER, None)
    return super().export_classifier({'params': fold_disentangler(params), **variables})

  # --- forward pieces
  def _head_fn(self, model_params):
    def head_fn(scale):
      head_params = scale_gradient(model_params, scale)
      return lambda feats: self.model.apply({'params': head_params}, feats, method='classify')
    return head_fn

  def eval_logits(self, params, model_state, images):
    return self._eval_forward(params, model_state, images)[0]

  def _eval_forward(self, params, model_state, images):
    _, f = self.model.apply({'params': params['model'], **model_state}, images, train=False,
                            return_features=True)
    f1 = f @ params['disentangler']['d1']
    return self.model.apply({'params': params['model']}, f1, method='classify'), f1

  def train_forward(self, params, model_state, images, rng):
    raise NotImplementedError('AFD has its own loss')

  def loss(self, params, model_state, extra, batch, rng):
    del extra
    c = self.config.afd
    own_state, teacher = self.split_state(model_state)
    attack_rng, dropout_rng = jax.random.split(rng)
    images, labels = batch['image'], batch['label']
    x_adv = self.attack(params, own_state, images, labels, attack_rng)
    (_, f), new_state = self.model.apply(
        {'params': params['model'], **own_state}, x_adv, train=True, return_features=True,
        rngs={'dropout': dropout_rng}, mutable=list(own_state.keys()))
    _, f_nat = self.model.apply(teacher, images, train=False, return_features=True)
    surrogate, parts, _ = afd_losses(
        f, params['disentangler']['d1'], params['disentangler']['d2'],
        self._head_fn(params['model']), f_nat, labels, alpha=c.alpha, beta=c.beta,
        gamma=c.gamma, mode=c.mode, dis_grad_to_classifier=c.dis_grad_to_classifier,
        label_smoothing=self.config.label_smoothing)
    if c.mode == 'code_faithful':
      surrogate = surrogate + self._second_weight_decay(params)
    metrics = {**parts, 'loss': surrogate}
    return surrogate, (metrics, {**dict(new_state), TEACHER: teacher})

  def _second_weight_decay(self, params):
    """L2 term whose gradient is the code's second optimizer's coupled weight decay (all but D2)."""
    o = self.config.optimizer
    if not o.weight_decay:
      return 0.0
    leaves = jax.tree.leaves({'model': params['model'], 'd1': params['disentangler']['d1']})
    return 0.5 * o.weight_decay * sum(
        jnp.sum(jnp.square(p)) for p in leaves if o.decay_norm_and_bias or p.ndim > 1)

  def predict_fns(self):
    def split(variables):
      variables = dict(variables)
      params = variables.pop('params')
      variables.pop(TEACHER, None)
      return params, variables

    def logits(variables, images):
      return self.eval_logits(*split(variables), images)

    def features(variables, images):
      return self._eval_forward(*split(variables), images)

    def confused_logits(variables, images):
      params, state = split(variables)
      _, f = self.model.apply({'params': params['model'], **state}, images, train=False,
                              return_features=True)
      return self.model.apply({'params': params['model']}, f @ params['disentangler']['d2'],
                              method='classify')
    return {'logits': logits, 'features': features, 'confused_logits': confused_logits}
