"""MIRO, ERM++'s optional regulariser: the loss against a numpy transcription of the reference
(kakaobrain/miro, domainbed/algorithms/miro.py), weight 0 = ERM, the encoders' lr multiplier, and
the frozen network being the starting (loaded) weights. Tiny shapes, fake MNIST files."""

import jax
import jax.numpy as jnp
import numpy as np

from jaxcv import checkpoint, optim, train
from jaxcv import config as config_lib
from jaxcv.data.dataset import DataInfo
from jaxcv.domain_generalization import erm_pp, miro
from jaxcv.tasks import build_task

from test_erm_pp import data_dir, load  # noqa: F401  (fixture)
from test_domain_generalization import _private_cache  # noqa: F401  (autouse)


def _reference_regulariser(feats_nchw, pre_nchw, biases, eps=1e-5):
  """The reference's update(), transcribed to numpy: NCHW features, b of shape (1, C, 1, 1)."""
  reg = 0.0
  for f, pre_f, b in zip(feats_nchw, pre_nchw, biases):
    var = np.log1p(np.exp(b)) + eps  # VarianceEncoder.forward: softplus(b) + eps.
    vlb = (f - pre_f) ** 2 / var + np.log(var)
    reg += vlb.mean() / 2.0
  return reg


def test_regulariser_matches_the_reference_transcription():
  rng = np.random.default_rng(0)
  shapes = {'stage1': (3, 5, 6, 4), 'stage2': (3, 2, 3, 7)}  # NHWC, channel counts differ.
  feats = {k: rng.normal(size=s).astype(np.float32) for k, s in shapes.items()}
  pre = {k: rng.normal(size=s).astype(np.float32) for k, s in shapes.items()}
  biases = {k: rng.normal(size=(s[-1],)).astype(np.float32) for k, s in shapes.items()}
  ours = miro.regulariser(feats, pre, {k: {'b': jnp.asarray(b)} for k, b in biases.items()})
  names = sorted(shapes)
  nchw = lambda x: np.transpose(x, (0, 3, 1, 2))
  expected = _reference_regulariser([nchw(feats[k]) for k in names], [nchw(pre[k]) for k in names],
                                    [biases[k].reshape(1, -1, 1, 1) for k in names])
  np.testing.assert_allclose(float(ours), expected, rtol=1e-5)


def test_variance_starts_at_the_reference_init():
  # The reference: b = log(exp(init - eps) - 1), so softplus(b) + eps = init = 0.1.
  np.testing.assert_allclose(miro.initial_bias(), np.log(np.exp(0.1 - 1e-5) - 1.0), rtol=1e-12)
  np.testing.assert_allclose(float(miro.variance(jnp.float32(miro.initial_bias()))), 0.1,
                             rtol=1e-6)


def _task(weight, use_miro=True):
  config = config_lib.base_config()
  config.model.name = 'mlp'  # Sows its two hidden layers: the quickest model with stages.
  config.model.kwargs = {'hidden': (16, 8)}
  erm_pp.add_erm_pp_config(config, use_miro=use_miro, miro_weight=weight)
  return config, build_task(config, DataInfo(10, (8, 8, 1), 64))


def _loss_and_grads(task, params, model_state, extra, batch):
  return jax.jit(jax.value_and_grad(task.loss, has_aux=True))(params, model_state, extra, batch,
                                                             jax.random.key(3))


def test_weight_zero_is_erm_and_the_regulariser_starts_at_log_variance():
  batch = {'image': jax.random.uniform(jax.random.key(1), (6, 8, 8, 1)),
           'label': jnp.arange(6) % 10}
  _, erm_task = _task(0.0, use_miro=False)
  erm_params, model_state = erm_task.init_variables(jax.random.key(0))
  (erm_loss, _), erm_grads = _loss_and_grads(erm_task, erm_params, model_state, None, batch)

  _, task = _task(0.0)
  params, model_state = task.init_variables(jax.random.key(0))
  assert {k: v['b'].shape for k, v in params[miro.PARAMS_KEY].items()} == {
      'stage1': (16,), 'stage2': (8,)}
  extra = task.init_extra(jax.random.key(2), params, model_state)
  (loss, (metrics, _)), grads = _loss_and_grads(task, params, model_state, extra, batch)
  np.testing.assert_allclose(loss, erm_loss, rtol=1e-6)
  for a, b in zip(jax.tree.leaves({k: v for k, v in grads.items() if k != miro.PARAMS_KEY}),
                  jax.tree.leaves(erm_grads)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
  assert all(not np.any(g) for g in jax.tree.leaves(grads[miro.PARAMS_KEY]))
  # Before any update the trained and frozen features agree: 2 stages of log(0.1) / 2.
  np.testing.assert_allclose(metrics['miro_reg'], 2 * np.log(0.1) / 2, rtol=1e-5)

  _, weighted = _task(0.1)
  (loss_01, _), grads_01 = _loss_and_grads(weighted, params, model_state, extra, batch)
  np.testing.assert_allclose(loss_01, erm_loss + 0.1 * 2 * np.log(0.1) / 2, rtol=1e-5)
  assert any(np.any(g) for g in jax.tree.leaves(grads_01[miro.PARAMS_KEY]))


def test_variance_encoders_step_at_ten_times_the_lr():
  config, task = _task(0.1)
  config.optimizer.name, config.schedule.name, config.schedule.lr = 'adam', 'constant', 1e-3
  config.schedule.warmup_steps = 0
  params, _ = task.init_variables(jax.random.key(0))
  tx = optim.build_optimizer(config, optim.build_schedule(config, 10))
  grads = jax.tree.map(jnp.ones_like, params)
  updates, _ = tx.update(grads, tx.init(params), params)
  # Adam's first step moves every parameter by lr (sign of a constant gradient).
  np.testing.assert_allclose(np.abs(updates[miro.PARAMS_KEY]['stage1']['b']), 1e-2, rtol=1e-4)
  np.testing.assert_allclose(np.abs(updates['fc1']['kernel']), 1e-3, rtol=1e-4)


def test_frozen_network_is_the_loaded_start(tmp_path, data_dir):  # noqa: F811
  start = tmp_path / 'start'
  arg = 'stage=full,steps=2,average=none,eval_examples=8,model=mlp'  # Evaluates test_in only.
  train.run(load(arg, data_dir), str(start))
  run = tmp_path / 'miro'
  train.run(load(f'{arg},miro,init={start}', data_dir), str(run))
  started = checkpoint.load_pretrained(str(start))[0]['params']
  final = checkpoint.load_pretrained(str(run))[0]
  frozen = final['extra']['miro_frozen']['params']
  assert set(frozen) == set(started)
  for a, b in zip(jax.tree.leaves(frozen), jax.tree.leaves(started)):
    np.testing.assert_array_equal(a, b)
  assert not np.array_equal(final['params']['fc1']['kernel'], started['fc1']['kernel'])
  assert set(final['params'][miro.PARAMS_KEY]) == {'stage1', 'stage2'}
