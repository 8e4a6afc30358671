"""PGD-AT and TRADES as tasks of the loop: config checks, the zero-budget reductions to plain
training, the EMA warm-up, and a short sharded run with the robustness and feature-gap evaluators."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxcv import config as config_lib
from jaxcv import train
from jaxcv.data.dataset import DataInfo
from jaxcv.errors import ConfigError
from jaxcv.tasks import TrainState, build_task
from jaxcv.tasks.adversarial import add_adversarial_config, warmup_ema
from jaxcv.tasks.classification import ClassificationTask

from conftest import REPO_ROOT

INFO = DataInfo(4, (8, 8, 3), 64, None)


def tiny(task='pgd_at', overrides=(), model='resnet_tiny', **adversarial):
  config = config_lib.load(str(REPO_ROOT / 'tests' / 'configs' / 'tiny.py'),
                           ['total_steps=2', 'batch_size=16', *overrides])
  config.unlock()
  config.data.name = 'synthetic:n=64,size=8,classes=4'
  config.model.name = model  # resnet_tiny has BatchNorm, so that BN handling is exercised.
  config.model.kwargs.width = 4
  config.evals.test.max_examples = 32
  config.task = task
  if adversarial is not None:
    add_adversarial_config(config, **adversarial)
  return config


def test_config_errors_are_clear():
  config = tiny()
  del config['adversarial']
  with pytest.raises(ConfigError, match='add_adversarial_config'):
    build_task(config, INFO)
  with pytest.raises(ConfigError, match='bn_mode'):
    build_task(tiny(bn_mode='batch'), INFO)
  with pytest.raises(ConfigError, match='ema_warmup needs ema_decay'):
    build_task(tiny(ema_warmup=True), INFO)


def batch():
  keys = jax.random.split(jax.random.key(0), 2)
  return {'image': jax.random.uniform(keys[0], (8, 8, 8, 3)),
          'label': jax.random.randint(keys[1], (8,), 0, 4)}


@pytest.mark.parametrize('name', ['pgd_at', 'trades'])
def test_zero_budget_reduces_to_plain_training(name):
  # TRADES' two train-mode forwards see different BN statistics: a BN-free model for it.
  config = tiny(name, model='resnet_tiny' if name == 'pgd_at' else 'small_cnn', eps=0.0,
                step_size=0.0, steps=2)
  task, plain = build_task(config, INFO), ClassificationTask(config, INFO)
  params, state = task.init_variables(jax.random.key(1))
  loss, (metrics, new_state) = jax.jit(task.loss)(params, state, None, batch(),
                                                  jax.random.key(2))
  plain_loss, (_, plain_state) = jax.jit(plain.loss)(params, state, None, batch(),
                                                     jax.random.key(2))
  np.testing.assert_allclose(loss, plain_loss, rtol=1e-6)
  if name == 'trades':
    np.testing.assert_allclose(metrics['robust_kl'], 0.0, atol=1e-6)
  else:  # The attack touched no BatchNorm statistics: only the training forward did.
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6), new_state, plain_state)


def test_attack_raises_the_loss():
  config = tiny(model='small_cnn', eps=8 / 255, step_size=2 / 255, steps=3)
  task = build_task(config, INFO)
  params, state = task.init_variables(jax.random.key(1))
  adv = jax.jit(task.loss)(params, state, None, batch(), jax.random.key(2))[0]
  clean = jax.jit(ClassificationTask(config, INFO).loss)(params, state, None, batch(),
                                                         jax.random.key(2))[0]
  assert adv > clean


def test_ema_warmup_uses_min_decay_schedule():
  rng = np.random.default_rng(0)
  old_ema, params = rng.normal(size=(2, 5)).astype(np.float32)
  decay = 0.999
  for n in (0, 5, 20000):
    loop_ema = decay * old_ema + (1 - decay) * params  # What the loop computed.
    state = TrainState(step=jnp.array(n + 1), params=params, model_state={}, opt_state=None,
                       ema_params=loop_ema)
    decay_n = min(decay, (n + 1) / (n + 10))
    np.testing.assert_allclose(warmup_ema(state, decay).ema_params,
                               decay_n * old_ema + (1 - decay_n) * params, rtol=1e-5, atol=1e-6)


def test_sharded_run_with_robustness_and_feature_gap_evaluators(tmp_path):
  config = tiny('trades', ['ema_decay=0.9'], model='small_cnn', steps=2, ema_warmup=True)
  config.evals.robust = dict(type='robustness', split='test', max_examples=16, batch_size=16,
                             attacks=(('pgd', 'pgd(steps=2)'), ('apgd_t', 'apgd_t(steps=2, num_targets=1)')),
                             worst_case_of=('apgd_t',))
  config.evals.gap = dict(type='feature_gap', split='test', max_examples=16, batch_size=16,
                          steps=2)
  summary = train.run(config, str(tmp_path))
  assert summary['devices'].startswith('8 x')
  assert np.isfinite(summary['train/loss'])
  clean = summary['robust/clean_accuracy']
  assert summary['robust/worst_case_accuracy'] == summary['robust/apgd_t_accuracy'] <= clean
  assert summary['robust/pgd_accuracy'] <= clean
  assert summary['gap/l2'] > 0 and 0 <= summary['gap/cosine_distance'] <= 2
