"""Attack invariants: eps-ball and [0, 1] box, determinism per rng, zero budget, closed-form
optima on linear models, APGD's schedule and losses, the ensemble evaluator's bookkeeping."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxcv import attacks
from jaxcv.attacks import common
from jaxcv.errors import ConfigError

SHAPE = (6, 4, 4, 3)  # Tiny images: N, H, W, C.
EPS = 8 / 255


def images(seed=0, low=0.0, high=1.0):
  return jax.random.uniform(jax.random.key(seed), SHAPE, minval=low, maxval=high)


def linear_predict(num_classes=10, seed=1):
  dim = int(np.prod(SHAPE[1:]))
  w = jax.random.normal(jax.random.key(seed), (dim, num_classes))
  b = jax.random.normal(jax.random.key(seed + 1), (num_classes,))
  return (lambda x: x.reshape(x.shape[0], -1) @ w + b), w, b


def mlp_predict(num_classes=10, seed=3, width=32):
  """A small non-linear model, so that attacks have something to search."""
  dim = int(np.prod(SHAPE[1:]))
  k1, k2 = jax.random.split(jax.random.key(seed))
  w1 = jax.random.normal(k1, (dim, width)) * 2 / np.sqrt(dim)
  w2 = jax.random.normal(k2, (width, num_classes)) * 2 / np.sqrt(width)
  return lambda x: jnp.tanh(x.reshape(x.shape[0], -1) @ w1 * 4) @ w2


def run_all(predict, x, y, rng, eps, norm='linf'):
  """Every attack family on the same batch, with small step counts (one jitted program); under
  L2 the families whose projection differs (targeted/DLR APGD share APGD-CE's)."""
  if norm == 'l2':
    return {
        'fgsm': attacks.fgsm(predict, x, y, eps=eps, norm=norm),
        'pgd_restarts': attacks.pgd(predict, x, y, rng, eps=eps, step_size=eps / 4, steps=3,
                                    norm=norm, restarts=2),
        'apgd_ce': attacks.apgd(predict, x, y, rng, eps=eps, steps=10, norm=norm),
    }
  return {
      'fgsm': attacks.fgsm(predict, x, y, eps=eps, norm=norm),
      'pgd': attacks.pgd(predict, x, y, rng, eps=eps, step_size=eps / 4, steps=5, norm=norm),
      'pgd_restarts': attacks.pgd(predict, x, y, rng, eps=eps, step_size=eps / 4, steps=3,
                                  norm=norm, restarts=3),
      'apgd_ce': attacks.apgd(predict, x, y, rng, eps=eps, steps=10, norm=norm),
      'apgd_dlr': attacks.apgd(predict, x, y, rng, eps=eps, steps=10, norm=norm, loss='dlr'),
      'apgd_t': attacks.apgd_targeted(predict, x, y, rng, eps=eps, steps=5, norm=norm,
                                      num_targets=2),
  }


run_all_jit = jax.jit(run_all, static_argnums=(0, 4, 5))
MLP = None


def mlp():
  global MLP  # One predict function for the module, so jitted attacks are compiled once.
  MLP = MLP or mlp_predict()
  return MLP


def edge_images():
  """Half the pixels at 0 or 1, where half of each eps-ball lies outside the [0, 1] box."""
  x = images()
  return jnp.where(jnp.arange(SHAPE[-1]) < 2, x, jnp.round(x))


@pytest.mark.parametrize('norm', ['linf', 'l2'])
def test_perturbations_stay_in_the_eps_ball_and_the_box(norm):
  x = edge_images()
  y = jnp.argmax(mlp()(x), -1)  # All correctly classified, so every attack works on them all.
  eps = EPS if norm == 'linf' else 0.5
  for name, x_adv in run_all_jit(mlp(), x, y, jax.random.key(7), eps, norm).items():
    delta = np.asarray(x_adv - x).reshape(SHAPE[0], -1)
    size = np.abs(delta).max(1) if norm == 'linf' else np.linalg.norm(delta, axis=1)
    assert size.max() <= eps * (1 + 1e-5) + 1e-7, name
    assert float(x_adv.min()) >= 0 and float(x_adv.max()) <= 1, name
    if name.startswith('apgd'):  # As the reference: a fooling image, else the clean one.
      fooled = np.asarray(jnp.argmax(mlp()(x_adv), -1) != y)
      np.testing.assert_array_equal(size > 0, fooled, err_msg=name)
    else:
      assert size.max() > 0.5 * eps, name  # The attack used its budget.
  assert size.max() > 0  # APGD-T (the last) fooled some.


def test_deterministic_per_rng():
  x, y = edge_images(), jnp.arange(SHAPE[0]) % 10
  a = run_all_jit(mlp(), x, y, jax.random.key(7), EPS, 'linf')  # Compiled by the test above.
  b = run_all_jit(mlp(), x, y, jax.random.key(7), EPS, 'linf')
  c = run_all_jit(mlp(), x, y, jax.random.key(8), EPS, 'linf')
  for name in a:
    np.testing.assert_array_equal(a[name], b[name], err_msg=name)
  assert not np.array_equal(a['pgd'], c['pgd'])  # The random start depends on the rng.


def test_zero_budget_leaves_images_and_accuracy_unchanged():
  predict = mlp()
  x = images()
  y = jnp.argmax(predict(x), -1)  # All correctly classified.
  specs = (attacks.parse_attack('pgd', 'pgd(steps=3)'),
           attacks.parse_attack('apgd', 'apgd_ce(steps=4)'))
  masks = jax.jit(lambda x, y: attacks.robust_accuracy_masks(
      predict, x, y, jax.random.key(0), specs, eps=0.0))(x, y)
  assert all(bool(m.all()) for m in masks.values())
  x_adv = attacks.pgd(predict, x, y, jax.random.key(0), eps=0.0, step_size=0.1, steps=2)
  np.testing.assert_allclose(x_adv, x, atol=1e-7)


def test_linf_attacks_find_the_closed_form_optimum_of_a_linear_model():
  # Two classes: CE increases with the margin d.x, d = w_wrong - w_true, so the best point of
  # box & ball is x + eps * sign(d), clipped to [0, 1], coordinate by coordinate.
  predict, w, b = linear_predict(num_classes=2)
  x = images()
  y = jnp.zeros(SHAPE[0], jnp.int32)
  direction = jnp.sign(w[:, 1] - w[:, 0]).reshape(SHAPE[1:])
  optimum = jnp.clip(x + EPS * direction, 0, 1)
  best_loss = common.cross_entropy(predict(optimum), y)
  found = {
      'fgsm': attacks.fgsm(predict, x, y, eps=EPS),
      'pgd': attacks.pgd(predict, x, y, jax.random.key(0), eps=EPS, step_size=EPS / 3, steps=10),
      # The reference's best_loss mode: the highest-loss point, fooling or not.
      'apgd_ce': attacks.apgd(predict, x, y, jax.random.key(0), eps=EPS, steps=20,
                              best_loss=True),
  }
  for name, x_adv in found.items():
    np.testing.assert_allclose(common.cross_entropy(predict(x_adv), y), best_loss, rtol=1e-5,
                               err_msg=name)
  np.testing.assert_allclose(found['fgsm'], optimum, atol=1e-6)


def test_l2_pgd_finds_the_closed_form_optimum_of_a_linear_model():
  predict, w, _ = linear_predict(num_classes=2)
  x = images(low=0.4, high=0.6)  # The ball stays inside the box: no clipping.
  y = jnp.zeros(SHAPE[0], jnp.int32)
  eps = 0.05
  d = (w[:, 1] - w[:, 0]).reshape(SHAPE[1:])
  optimum = x + eps * d / jnp.linalg.norm(d)
  # From x itself the iterates move along d and stop on the sphere (a random start would only
  # be pulled in geometrically).
  x_adv = attacks.pgd(predict, x, y, jax.random.key(0), eps=eps, step_size=eps / 2, steps=4,
                      norm='l2', random_start=False)
  np.testing.assert_allclose(x_adv, optimum, atol=1e-5)


def test_cw_l2_finds_nearly_the_minimal_perturbation_of_a_linear_model():
  predict, w, b = linear_predict(num_classes=2)
  x = images(low=0.3, high=0.7)
  logits = predict(x)
  y = jnp.argmax(logits, -1)
  d = w[:, 1] - w[:, 0]
  # Distance to the decision boundary: |margin| / ||d|| (the box is not active here).
  minimal = np.abs(np.asarray(logits[:, 1] - logits[:, 0])) / float(jnp.linalg.norm(d))
  x_adv = attacks.cw_l2(predict, x, y, steps=200, binary_search_steps=8, learning_rate=0.01,
                        initial_const=1.0)
  norms = np.asarray(attacks.per_example_norm(x_adv - x)).ravel()
  fooled = np.asarray(jnp.argmax(predict(x_adv), -1) != y)
  assert fooled.all()
  assert (norms >= minimal * (1 - 1e-3)).all()  # Nothing beats the closed form ...
  assert (norms <= minimal * 1.15 + 1e-3).all()  # ... and CW gets close to it.
  robust = attacks.robust_within(predict, x, x_adv, y, eps=float(minimal.min()) / 2)
  assert bool(robust.all())


def test_apgd_checkpoints_follow_the_paper():
  is_checkpoint, window = attacks.checkpoint_schedule(100)
  # p_0 = 0, p_1 = 0.22, p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03, 0.06).
  np.testing.assert_array_equal(np.flatnonzero(is_checkpoint) + 1,
                                [22, 41, 57, 70, 80, 87, 93, 99])
  np.testing.assert_array_equal(window[is_checkpoint], [22, 19, 16, 13, 10, 7, 6, 6])


def test_dlr_losses_are_shift_and_scale_invariant():
  logits = jax.random.normal(jax.random.key(0), (8, 10))
  y = jnp.arange(8)
  targets = (y + 1) % 10
  np.testing.assert_allclose(attacks.dlr(3 * logits + 2, y), attacks.dlr(logits, y), rtol=1e-5)
  np.testing.assert_allclose(attacks.targeted_dlr(3 * logits - 1, (y, targets)),
                             attacks.targeted_dlr(logits, (y, targets)), rtol=1e-5)
  # Positive exactly for misclassified examples.
  assert np.array_equal(np.asarray(attacks.dlr(logits, y) > 0),
                        np.asarray(jnp.argmax(logits, -1) != y))


def test_apgd_halves_its_step_keeps_the_first_fooling_restart_and_beats_pgd():
  # A sharp MLP on 8 features: local optima, so that restarts matter.
  k1, k2 = jax.random.split(jax.random.key(6))
  w1 = jax.random.normal(k1, (8, 32)) / np.sqrt(2)
  w2 = jax.random.normal(k2, (32, 10)) / np.sqrt(8)
  predict = lambda x: jnp.tanh(x.reshape(x.shape[0], -1) @ w1 * 6) @ w2
  x = jax.random.uniform(jax.random.key(1), (64, 2, 2, 2))
  y = jnp.argmax(predict(x), -1)  # Clean accuracy 100%.
  eps, steps = 0.03, 20
  fooled = lambda x_adv: np.asarray(jnp.argmax(predict(x_adv), -1) != y)
  # One run from the reference's start reaches the step-halving branch and tracks the best loss
  # over the start and every iterate (tests/test_autoattack.py follows each branch step by step).
  start = attacks.apgd_start(jax.random.key(2), x, eps, 'linf')
  run = attacks.apgd_run(predict, attacks.cross_entropy, x, y, y, start, eps=eps, steps=steps)
  halvings = np.log2(2 * eps / np.asarray(run.step_sizes[-1])).round()
  assert halvings.max() >= 2 and halvings.min() >= 1
  start_loss = attacks.cross_entropy(predict(start), y)
  np.testing.assert_allclose(run.loss_best, np.maximum(start_loss, run.losses.max(0)), rtol=1e-6)
  # Restarts: later ones only add fooled examples and keep the earlier ones' images; the rest
  # get the clean image back.
  one, four, larger = jax.jit(lambda x: [
      attacks.apgd(predict, x, y, jax.random.key(2), eps=eps, steps=steps),
      attacks.apgd(predict, x, y, jax.random.key(2), eps=eps, steps=steps, restarts=4),
      attacks.apgd(predict, x, y, jax.random.key(2), eps=2 * eps, steps=steps)])(x)
  assert np.all(fooled(four) >= fooled(one)) and fooled(four).sum() > fooled(one).sum()
  np.testing.assert_array_equal(four[fooled(one)], one[fooled(one)])
  np.testing.assert_array_equal(four[~fooled(four)], x[~fooled(four)])
  # Stronger than PGD with a budget of the same order; a larger eps fools more.
  pgd = attacks.pgd(predict, x, y, jax.random.key(2), eps=eps, step_size=eps / 4, steps=10)
  assert fooled(pgd).sum() <= fooled(one).sum() < fooled(larger).sum() < len(x)


def test_ensemble_specs_and_worst_case():
  with pytest.raises(ConfigError, match='unknown attack'):
    attacks.parse_attack('a', 'deepfool(steps=3)')
  with pytest.raises(ConfigError, match='takes'):
    attacks.parse_attack('a', 'apgd_ce(step_size=0.1)')
  spec = attacks.parse_attack('p', 'pgd(steps=7, step_size=0.001)')
  assert spec.settings() == {'steps': 7, 'step_size': 0.001, 'restarts': 1}
  predict = mlp_predict()
  x = jax.random.uniform(jax.random.key(4), (16, *SHAPE[1:]))
  y = jnp.argmax(predict(x), -1).at[:2].add(1) % 10  # Two examples wrong from the start.
  specs = (attacks.parse_attack('weak', 'pgd(steps=1, step_size=0.01)'),
           attacks.parse_attack('strong', 'apgd_ce(steps=10)'))
  masks = attacks.robust_accuracy_masks(predict, x, y, jax.random.key(0), specs, eps=0.05)
  clean, weak, strong = (np.asarray(masks[k]) for k in ('clean', 'weak', 'strong'))
  # The case separates the three: the weak attack fools some, the strong one more, and each
  # counts an example robust only if it is also clean-correct.
  assert clean.sum() == 14 and not clean[:2].any()
  assert strong.sum() < weak.sum() < clean.sum()
  assert not (weak & ~clean).any() and not (strong & ~clean).any()
  np.testing.assert_array_equal(masks['worst_case'], weak & strong)
  only_weak = attacks.robust_accuracy_masks(predict, x, y, jax.random.key(0), specs, eps=0.05,
                                            worst_case_of=('weak',))
  np.testing.assert_array_equal(only_weak['worst_case'], weak)
  assert np.asarray(only_weak['worst_case']).sum() > np.asarray(masks['worst_case']).sum()


class TinyBN(nn.Module):
  @nn.compact
  def __call__(self, x, train=False):
    h = nn.Dense(8)(x.reshape(x.shape[0], -1))
    h = nn.BatchNorm(use_running_average=not train, momentum=0.9)(h)
    return nn.Dense(10)(nn.relu(h))


def test_model_predict_fn_bn_modes_do_not_update_statistics():
  model = TinyBN()
  x = images()
  variables = model.init(jax.random.key(0), x)
  eval_fn = attacks.model_predict_fn(model, variables)
  train_fn = attacks.model_predict_fn(model, variables, bn_train_mode=True)
  # Eval mode: an example's logits do not depend on the rest of the batch; train mode: they do.
  np.testing.assert_allclose(eval_fn(x)[:2], eval_fn(x[:2]), rtol=1e-5, atol=1e-6)
  assert not np.allclose(train_fn(x)[:2], train_fn(x[:2]), atol=1e-4)
  before = jax.tree.map(np.array, variables['batch_stats'])
  x_adv = attacks.pgd(train_fn, x, jnp.zeros(SHAPE[0], jnp.int32), jax.random.key(0), eps=EPS,
                      step_size=EPS / 2, steps=2)
  assert float(jnp.abs(x_adv - x).max()) <= EPS + 1e-6
  jax.tree.map(np.testing.assert_array_equal, before, variables['batch_stats'])
