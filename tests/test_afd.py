"""AFD's pieces on a tiny batch: the confusing label, the three losses, the gradient routing of
both update modes, the two-buffer SGD identity `code_faithful` rests on, folding D1 into the
head, a tiny natural -> AFD -> evaluation run through the loop, and the table's chain."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxcv import checkpoint as checkpoint_lib
from jaxcv import config as config_lib
from jaxcv import sweep
from jaxcv import train
from jaxcv.data.dataset import DataInfo
from jaxcv.tasks import afd
from jaxcv.tasks.adversarial import add_adversarial_config

from conftest import REPO_ROOT

D, C, N = 6, 4, 5  # Feature dim, classes, batch.
WEIGHTS = dict(alpha=0.3, beta=0.7, gamma=2.0)


def test_confusing_label_is_the_most_likely_wrong_class():
  logits = jnp.array([[5.0, 1.0, 3.0], [0.0, 2.0, 1.0], [1.0, 0.0, 4.0]])
  labels = jnp.array([0, 0, 1])
  # Right -> runner-up (2); wrong -> the prediction (1, 2).
  np.testing.assert_array_equal(afd.confusing_labels(logits, labels), [2, 1, 2])


def pieces(seed=0):
  keys = jax.random.split(jax.random.key(seed), 6)
  f = jax.nn.relu(jax.random.normal(keys[0], (N, D)))
  d1 = jnp.eye(D) + 0.1 * jax.random.normal(keys[1], (D, D))
  d2 = jnp.eye(D) + 0.1 * jax.random.normal(keys[2], (D, D))
  w = jax.random.normal(keys[3], (D, C))
  f_nat = jax.nn.relu(jax.random.normal(keys[4], (N, D)))
  labels = jax.random.randint(keys[5], (N,), 0, C)
  return f, d1, d2, w, f_nat, labels


def head_fn_of(w):
  return lambda scale: (lambda feats: feats @ afd.scale_gradient(w, scale))


def numpy_losses(f, d1, d2, w, f_nat, labels, alpha, beta, gamma):
  f, d1, d2, w, f_nat = (np.asarray(a, np.float64) for a in (f, d1, d2, w, f_nat))
  f1, f2 = f @ d1, f @ d2
  l1, l2 = f1 @ w, f2 @ w
  order = np.argsort(-l1, -1)
  confusing = np.where(order[:, 0] == labels, order[:, 1], order[:, 0])
  ce = lambda z, y: np.mean(np.log(np.exp(z).sum(-1)) - z[np.arange(len(y)), y])
  cos = lambda a, b: np.mean((a * b).sum(-1) / np.linalg.norm(a, axis=-1) / np.linalg.norm(b, axis=-1))
  return {'loss_dis': alpha * ce(l2, confusing), 'loss_cos': beta * cos(f1, f2),
          'loss_rob': ce(l1, np.asarray(labels)) + gamma * (1 - cos(f1, f_nat))}


def test_losses_match_a_numpy_reference():
  f, d1, d2, w, f_nat, labels = pieces()
  surrogate, parts, _ = afd.afd_losses(f, d1, d2, head_fn_of(w), f_nat, labels, **WEIGHTS)
  expected = numpy_losses(f, d1, d2, w, f_nat, labels, **WEIGHTS)
  for name, value in expected.items():
    np.testing.assert_allclose(parts[name], value, rtol=1e-5, err_msg=name)
  np.testing.assert_allclose(surrogate, sum(expected.values()), rtol=1e-5)


def grads(mode, dis_grad_to_classifier=False):
  """Gradients of the surrogate, and of each true loss alone, w.r.t. (f, d1, d2, w)."""
  f, d1, d2, w, f_nat, labels = pieces()

  def run(f, d1, d2, w):
    return afd.afd_losses(f, d1, d2, head_fn_of(w), f_nat, labels, mode=mode,
                          dis_grad_to_classifier=dis_grad_to_classifier, **WEIGHTS)

  surrogate = jax.grad(lambda *a: run(*a)[0], argnums=(0, 1, 2, 3))(f, d1, d2, w)

  def plain(name):  # The loss itself: only the architecture's stop-gradient, no routing.
    def loss(f, d1, d2, w):
      f1, f2 = f @ d1, jax.lax.stop_gradient(f) @ d2
      l1 = f1 @ w
      confusing = afd.confusing_labels(l1, labels)
      if name == 'dis':
        return WEIGHTS['alpha'] * jnp.mean(optax.softmax_cross_entropy_with_integer_labels(f2 @ w, confusing))
      if name == 'cos':
        return WEIGHTS['beta'] * jnp.mean(afd.cosine(f1, f2))
      return (jnp.mean(optax.softmax_cross_entropy_with_integer_labels(l1, labels)) +
              WEIGHTS['gamma'] * (1 - jnp.mean(afd.cosine(f1, f_nat))))
    return jax.grad(loss, argnums=(0, 1, 2, 3))(f, d1, d2, w)

  return surrogate, plain('dis'), plain('cos'), plain('rob')


def test_clean_mode_routes_each_loss_to_its_parameters():
  (gf, gd1, gd2, gw), dis, cos, rob = grads('clean')
  close = lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
  close(gd2, dis[2])  # D2: L_dis only.
  close(gd1, cos[1] + rob[1])  # D1: L_cos + L_rob.
  close(gf, cos[0] + rob[0])  # Backbone: never L_dis (stop-gradient), L_cos only through f1.
  close(gw, rob[3])  # W: L_rob only by default ...
  (_, _, _, gw_with_dis), _, _, _ = grads('clean', dis_grad_to_classifier=True)
  close(gw_with_dis, rob[3] + dis[3])  # ... or also L_dis when asked.


def test_code_faithful_mode_sums_the_codes_two_steps():
  (gf, gd1, gd2, gw), dis, cos, rob = grads('code_faithful')
  close = lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
  close(gd2, dis[2])
  close(gd1, 2 * cos[1] + rob[1])  # (g_cos) + (g_cos + g_rob).
  close(gf, 2 * cos[0] + rob[0])
  close(gw, 2 * dis[3] + rob[3])  # W sees g_dis in both steps.


def test_two_momentum_buffers_equal_one_buffer_fed_the_sum():
  """Why code_faithful can use the loop's one optimizer: SGD with momentum is linear in the
  gradients, so two optimizers (same lr schedule and momentum) stepping in turn with gradients
  computed at the same weights move the weights exactly as one fed their sum."""
  rng = np.random.default_rng(0)
  grads_a, grads_b = rng.normal(size=(2, 7, 3))
  for nesterov in (False, True):
    sgd = optax.sgd(optax.exponential_decay(0.1, 3, 0.5), momentum=0.9, nesterov=nesterov)
    theta_two, theta_one = np.zeros(3), np.zeros(3)
    state_a, state_b, state_one = sgd.init(theta_two), sgd.init(theta_two), sgd.init(theta_one)
    for ga, gb in zip(grads_a, grads_b):
      ua, state_a = sgd.update(ga, state_a)
      ub, state_b = sgd.update(gb, state_b)
      theta_two = theta_two + ua + ub
      u, state_one = sgd.update(ga + gb, state_one)
      theta_one = theta_one + u
    np.testing.assert_allclose(theta_two, theta_one, rtol=1e-6)


def tiny_afd_config(extra=()):
  config = config_lib.load(str(REPO_ROOT / 'tests' / 'configs' / 'tiny.py'),
                           ['total_steps=2', 'batch_size=16', *extra])
  config.unlock()
  config.data.name = 'synthetic:n=64,size=8,classes=4'
  config.model.kwargs.width = 4
  config.task = 'afd'
  config.ema_decay = 0.9
  config.evals.test.max_examples = 32
  add_adversarial_config(config, steps=1, step_size=4 / 255, ema_warmup=True)
  afd.add_afd_config(config, **WEIGHTS)
  return config


def test_folding_d1_into_the_head_preserves_logits():
  config = tiny_afd_config()
  task = afd.AFDTask(config, DataInfo(4, (8, 8, 3), 64, None))
  params, state = task.init_variables(jax.random.key(0))
  d1 = jax.random.normal(jax.random.key(1), params['disentangler']['d1'].shape)
  params = {**params, 'disentangler': {**params['disentangler'], 'd1': d1}}
  x = jax.random.uniform(jax.random.key(2), (5, 8, 8, 3))
  afd_logits = task.predict_fns()['logits']({'params': params, **state}, x)
  own_state, _ = task.split_state(state)
  plain_logits = task.model.apply({'params': afd.fold_disentangler(params), **own_state}, x)
  np.testing.assert_allclose(plain_logits, afd_logits, rtol=1e-5, atol=1e-5)
  assert not np.allclose(plain_logits, task.model.apply({'params': params['model'], **own_state}, x))


def test_natural_then_afd_then_plain_evaluation(tmp_path):
  one = jax.devices()[:1]
  natural = config_lib.load(str(REPO_ROOT / 'tests' / 'configs' / 'tiny.py'),
                            ['total_steps=2', 'batch_size=16', 'model.name=small_cnn'])
  natural.unlock()
  natural.data.name = 'synthetic:n=64,size=8,classes=4'
  natural.model.kwargs.width = 4
  natural.evals.test.max_examples = 32
  train.run(natural, str(tmp_path / 'natural'), devices=one)

  config = tiny_afd_config([f'init_checkpoint={tmp_path / "natural"}'])
  summary = train.run(config, str(tmp_path / 'afd'), devices=one)
  assert np.isfinite(summary['train/loss'])
  raw_natural, _ = checkpoint_lib.load_pretrained(str(tmp_path / 'natural'))
  raw_afd, step = checkpoint_lib.load_pretrained(str(tmp_path / 'afd'))
  assert step == 2
  # The teacher is the natural model, frozen; the disentangler moved away from the identity.
  jax.tree.map(np.testing.assert_array_equal, raw_afd['model_state']['teacher']['params'],
               raw_natural['params'])
  assert not np.allclose(raw_afd['params']['disentangler']['d1'], np.eye(8))

  # Evaluating the AFD run as a plain network (EMA weights, D1 folded) gives the same numbers.
  evaluation = config_lib.load(str(REPO_ROOT / 'tests' / 'configs' / 'tiny.py'),
                               ['total_steps=0', 'model.name=small_cnn',
                                f'init_checkpoint={tmp_path / "afd"}'])
  evaluation.unlock()
  evaluation.data.name = 'synthetic:n=64,size=8,classes=4'
  evaluation.model.kwargs.width = 4
  evaluation.evals.test.max_examples = 32
  evaluation.task = 'pgd_at'
  add_adversarial_config(evaluation, init_from='ema')
  plain = train.run(evaluation, str(tmp_path / 'eval'), devices=one)
  assert abs(plain['test/loss'] - summary['test/loss']) < 1e-4
  assert plain['test/accuracy'] == summary['test/accuracy']


def test_the_table_chain_natural_afd_evaluation_at_runlocal(tmp_path):
  """configs/afd/table.py: AFD's row fine-tunes its seed's natural row; its evaluation row
  attacks the fine-tuned weights; the table reads the evaluation rows."""
  workdir = tmp_path / 'afd'
  spec = (f'{REPO_ROOT / "configs" / "afd" / "table.py"}:runlocal,'
          'dataset=synthetic:n=128;size=8;classes=4,examples=32')
  records = sweep.run_table(spec, str(workdir), rows=['eval_afd_s0'])
  assert [(r['name'], r['status']) for r in records] == [
      ('natural_s0', 'ok'), ('afd_s0', 'ok'), ('eval_afd_s0', 'ok')]
  afd_config = json.loads((workdir / 'afd_s0' / 'config.json').read_text())
  assert afd_config['init_checkpoint'] == str(workdir / 'natural_s0')
  evaluation = json.loads((workdir / 'eval_afd_s0' / 'summary.json').read_text())
  assert 0.0 <= evaluation['robust/pgd20_s0.003_accuracy'] <= evaluation['robust/clean_accuracy']
  table = json.loads((workdir / 'table.json').read_text())
  afd_line = next(line for line in table['lines'] if line['line'] == 'afd')
  assert afd_line['columns']['Clean']['mean'] == pytest.approx(
      100 * evaluation['robust/clean_accuracy'])
  assert afd_line['reference'] == {'Clean': 84.9, 'PGD-20': 52.7, 'Attack ensemble': 47.4}
