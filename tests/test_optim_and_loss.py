"""Loss math, optimizer semantics (PyTorch-compatible SGD) and schedules, against closed forms."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxcv import config as config_lib
from jaxcv import optim
from jaxcv.errors import ConfigError
from jaxcv.losses import cross_entropy


def test_cross_entropy_with_label_smoothing_matches_closed_form():
  logits = np.array([[2.0, -1.0, 0.5], [0.0, 0.0, 3.0]], np.float32)
  labels = np.array([0, 1])
  log_p = logits - np.log(np.exp(logits).sum(1, keepdims=True))
  eps = 0.1
  targets = np.full((2, 3), eps / 3) + (1 - eps) * np.eye(3)[labels]
  expected = -(targets * log_p).sum(1)
  np.testing.assert_allclose(cross_entropy(jnp.asarray(logits), labels, eps), expected, rtol=1e-6)
  np.testing.assert_allclose(cross_entropy(jnp.asarray(logits), labels),
                             -log_p[np.arange(2), labels], rtol=1e-6)


def test_cross_entropy_is_float32_for_bf16_logits():
  logits = jnp.ones((2, 5), jnp.bfloat16)
  assert cross_entropy(logits, jnp.array([0, 1])).dtype == jnp.float32


def test_sgd_nesterov_with_weight_decay_matches_pytorch_semantics():
  config = config_lib.base_config()
  config.optimizer.weight_decay, config.optimizer.momentum = 0.1, 0.9
  lr = 0.5
  tx = optim.build_optimizer(config, optax.constant_schedule(lr))
  params = {'w': jnp.array([1.0, -2.0])}
  state = tx.init(params)
  grads = [np.array([0.3, 0.1]), np.array([-0.2, 0.4])]
  # torch.optim.SGD(lr, momentum, weight_decay, nesterov=True), step by step.
  p, buf = np.array([1.0, -2.0]), None
  for g in grads:
    d = g + 0.1 * p
    buf = d if buf is None else 0.9 * buf + d
    p = p - lr * (d + 0.9 * buf)
    updates, state = tx.update({'w': jnp.asarray(g)}, state, params)
    params = optax.apply_updates(params, updates)
  np.testing.assert_allclose(params['w'], p, rtol=1e-6)


def test_decay_mask_skips_norms_and_biases_when_asked():
  config = config_lib.base_config()
  config.optimizer.weight_decay, config.optimizer.momentum = 1.0, 0.0
  config.optimizer.decay_norm_and_bias = False
  tx = optim.build_optimizer(config, optax.constant_schedule(1.0))
  params = {'kernel': jnp.ones((2, 2)), 'bias': jnp.ones((2,))}
  zero = jax.tree.map(jnp.zeros_like, params)
  updates, _ = tx.update(zero, tx.init(params), params)
  np.testing.assert_allclose(updates['kernel'], -np.ones((2, 2)))
  np.testing.assert_allclose(updates['bias'], 0.0)


def test_warmup_then_cosine_schedule():
  config = config_lib.base_config()
  config.schedule.update(name='cosine', lr=1.0, warmup_steps=10, end_factor=0.0)
  schedule = optim.build_schedule(config, total_steps=110)
  assert float(schedule(0)) == 0.0
  assert float(schedule(5)) == pytest.approx(0.5)
  assert float(schedule(10)) == pytest.approx(1.0)
  assert float(schedule(60)) == pytest.approx(0.5, abs=1e-6)  # Half-way through the decay.
  assert float(schedule(110)) == pytest.approx(0.0, abs=1e-6)


def test_step_schedule_drops_at_fractions():
  config = config_lib.base_config()
  config.schedule.update(name='step', lr=1.0, step_boundaries=(0.5, 0.75), step_factor=0.1)
  schedule = optim.build_schedule(config, total_steps=100)
  assert [float(schedule(s)) for s in (0, 49, 50, 74, 75, 99)] == pytest.approx(
      [1.0, 1.0, 0.1, 0.1, 0.01, 0.01])


def test_unknown_optimizer_and_schedule_are_config_errors():
  config = config_lib.base_config()
  config.optimizer.name = 'sgdd'
  with pytest.raises(Exception, match='unknown optimizer'):
    optim.build_optimizer(config, optax.constant_schedule(1.0))
  config.schedule.name = 'cosin'
  with pytest.raises(Exception, match='unknown schedule'):
    optim.build_schedule(config, 10)


def test_step_schedule_with_one_factor_per_boundary():
  config = config_lib.base_config()
  config.schedule.update(name='step', lr=1.0, step_boundaries=(0.5, 0.6, 0.6),
                         step_factors=(0.8, 0.5, 0.5))
  schedule = optim.build_schedule(config, 10)
  # Boundaries that land on the same step multiply.
  assert [float(schedule(s)) for s in (4, 5, 6, 9)] == pytest.approx([1.0, 0.8, 0.2, 0.2])
  config.schedule.step_factors = (0.8,)
  with pytest.raises(ConfigError, match='step_factors has 1 factors for 3'):
    optim.build_schedule(config, 10)
