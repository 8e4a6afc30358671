"""AutoAttack in JAX against the reference (fra31/auto-attack): APGD and APGD-T step by step
against a NumPy transcription of `autopgd_base.py` on a tiny MLP (same random starts), FAB-T's
hyperplane projection against a linear program and FAB-T / Square on models with a known answer,
Square's p schedule against a transcription of `p_selection`, and the standard cascade."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import optimize

from jaxcv import attacks
from jaxcv.errors import ConfigError

FEATURES, HIDDEN, CLASSES = 8, 16, 10


# ------------------------------------------------------------------ a tiny MLP, in JAX and NumPy

class TinyMLP:
  """logits = tanh(x W1 + b1) W2 + b2 on 8 features, with hand-written input gradients."""

  def __init__(self, seed=0, scale=1.5, out_scale=1.0):
    rng = np.random.default_rng(seed)
    # float32 like the JAX side, so that both see the same ties (an iterate that stays on a
    # corner of the ball has exactly the loss of the previous one).
    f32 = lambda a: a.astype(np.float32)
    self.w1 = f32(rng.normal(size=(FEATURES, HIDDEN)) * scale)
    self.b1 = f32(rng.normal(size=HIDDEN) * 0.5)
    self.w2 = f32(rng.normal(size=(HIDDEN, CLASSES)) * out_scale)
    self.b2 = f32(rng.normal(size=CLASSES) * 0.1)
    self.jax_params = [jnp.asarray(p, jnp.float32) for p in (self.w1, self.b1, self.w2, self.b2)]

  def predict_jax(self, x):
    w1, b1, w2, b2 = self.jax_params
    return jnp.tanh(x @ w1 + b1) @ w2 + b2

  def logits_and_grad(self, x, dloss_dlogits):
    """Logits at x and d loss / d x for the loss whose logit gradient `dloss_dlogits(z)` gives."""
    h = np.tanh(x @ self.w1 + self.b1)
    z = h @ self.w2 + self.b2
    loss, dz = dloss_dlogits(z)
    dh = dz @ self.w2.T
    return z, loss.astype(np.float32), ((dh * (1 - h ** 2)) @ self.w1.T).astype(np.float32)


def np_ce(y):
  def fn(z):
    # log-softmax as torch and optax compute it (float32), so small losses round alike.
    shifted = z - z.max(1, keepdims=True)
    log_p = shifted - np.log(np.exp(shifted).sum(1, keepdims=True))
    return -log_p[np.arange(len(y)), y], np.exp(log_p) - np.eye(z.shape[1])[y]
  return fn


def np_dlr_targeted(y, y_target):
  """The reference's dlr_loss_targeted: -(z_y - z_t) / (z_(1) - (z_(3) + z_(4)) / 2 + 1e-12)."""
  def fn(z):
    u = np.arange(len(y))
    order = np.argsort(z, 1)
    num = -(z[u, y] - z[u, y_target])
    den = z[u, order[:, -1]] - 0.5 * (z[u, order[:, -3]] + z[u, order[:, -4]]) + 1e-12
    dnum = np.zeros_like(z)
    dnum[u, y] -= 1
    dnum[u, y_target] += 1
    dden = np.zeros_like(z)
    dden[u, order[:, -1]] += 1
    dden[u, order[:, -3]] -= 0.5
    dden[u, order[:, -4]] -= 0.5
    return num / den, dnum / den[:, None] - (num / den ** 2)[:, None] * dden
  return fn


# ------------------------------------------------------------------ the reference, in NumPy

def l2(v):
  return np.sqrt((v ** 2).sum(1, keepdims=True))


def l2_normalize(v):
  return v / (l2(v) + 1e-12)


def reference_single_run(model, x, y, x_start, eps, n_iter, loss_of, norm='linf'):
  """autopgd_base.APGDAttack.attack_single_run, L-inf and L2, transcribed line by line
  (loss_steps and its wrap-around index included). Returns (x_best, acc, loss_best, x_best_adv, step sizes,
  why): why[j] = (oscillation flags, no-improvement flags) at the j-th checkpoint."""
  n_iter_2, n_iter_min = max(int(0.22 * n_iter), 1), max(int(0.06 * n_iter), 1)
  size_decr = max(int(0.03 * n_iter), 1)
  x_adv = np.clip(x_start, 0.0, 1.0)
  x_best, x_best_adv = x_adv.copy(), x_adv.copy()
  loss_steps = np.zeros((n_iter, x.shape[0]))
  logits, loss_indiv, grad = model.logits_and_grad(x_adv, loss_of)
  grad_best = grad.copy()
  acc = logits.argmax(1) == y
  loss_best = loss_indiv.copy()
  step_size = 2 * eps * np.ones((x.shape[0], 1), np.float32)
  x_adv_old = x_adv.copy()
  k, counter3 = n_iter_2, 0
  loss_best_last_check = loss_best.copy()
  reduced_last_check = np.ones_like(loss_best)
  trace, why = [], []
  for i in range(n_iter):
    grad2 = x_adv - x_adv_old
    x_adv_old = x_adv.copy()
    a = 0.75 if i > 0 else 1.0
    if norm == 'linf':
      x_adv_1 = x_adv + step_size * np.sign(grad)
      x_adv_1 = np.clip(np.minimum(np.maximum(x_adv_1, x - eps), x + eps), 0.0, 1.0)
      x_adv_1 = np.clip(np.minimum(np.maximum(x_adv + (x_adv_1 - x_adv) * a + grad2 * (1 - a),
                                              x - eps), x + eps), 0.0, 1.0)
    else:
      x_adv_1 = x_adv + step_size * l2_normalize(grad)
      x_adv_1 = np.clip(x + l2_normalize(x_adv_1 - x) * np.minimum(eps, l2(x_adv_1 - x)), 0, 1)
      x_adv_1 = x_adv + (x_adv_1 - x_adv) * a + grad2 * (1 - a)
      x_adv_1 = np.clip(x + l2_normalize(x_adv_1 - x) * np.minimum(eps, l2(x_adv_1 - x)), 0, 1)
    x_adv = x_adv_1
    trace.append(step_size[:, 0].copy())
    logits, loss_indiv, grad = model.logits_and_grad(x_adv, loss_of)
    pred = logits.argmax(1) == y
    acc = np.minimum(acc, pred)
    x_best_adv[~pred] = x_adv[~pred]
    loss_steps[i] = loss_indiv
    ind = loss_indiv > loss_best
    x_best[ind], grad_best[ind], loss_best[ind] = x_adv[ind], grad[ind], loss_indiv[ind]
    counter3 += 1
    if counter3 == k:
      t = sum((loss_steps[i - c] > loss_steps[i - c - 1]).astype(float) for c in range(k))
      fl_oscillation = (t <= k * 0.75).astype(float)
      fl_reduce_no_impr = (1.0 - reduced_last_check) * (loss_best_last_check >= loss_best)
      why.append((fl_oscillation > 0, fl_reduce_no_impr > 0))
      fl_oscillation = np.maximum(fl_oscillation, fl_reduce_no_impr)
      reduced_last_check = fl_oscillation.copy()
      loss_best_last_check = loss_best.copy()
      reduce = fl_oscillation > 0
      step_size[reduce] /= 2.0
      x_adv[reduce], grad[reduce] = x_best[reduce], grad_best[reduce]
      k = max(k - size_decr, n_iter_min)
      counter3 = 0
  return x_best, acc, loss_best, x_best_adv, np.stack(trace), why


def reference_perturb(model, x, y, starts, eps, n_iter, make_loss, targets_per_run=None):
  """APGDAttack.perturb / APGDAttack_targeted.perturb: each run (restart, or target class) on
  the examples still correctly classified; returns (adv, per-run step traces)."""
  acc = model.logits_and_grad(x, np_ce(y))[0].argmax(1) == y
  adv = x.copy()
  traces = []
  for run, start in enumerate(starts):
    ind = np.flatnonzero(acc)
    if ind.size == 0:
      break
    if targets_per_run is None:
      loss_of = make_loss(y[ind])
    else:  # output.sort(dim=1)[1][:, -target_class], target_class = 2, 3, ...
      clean = model.logits_and_grad(x[ind], np_ce(y[ind]))[0]
      loss_of = make_loss(y[ind], np.argsort(clean, 1)[:, -(2 + targets_per_run[run])])
    _, acc_curr, _, adv_curr, trace, _ = reference_single_run(model, x[ind], y[ind], start[ind],
                                                           eps, n_iter, loss_of)
    fooled = ~acc_curr.astype(bool)
    acc[ind[fooled]] = False
    adv[ind[fooled]] = adv_curr[fooled]
    traces.append((ind, trace))
  return adv, traces


def batch(seed=1, n=24):
  rng = np.random.default_rng(seed)
  return rng.uniform(0.0, 1.0, size=(n, FEATURES)).astype(np.float32)


# ------------------------------------------------------------------ APGD vs the reference

EPS, STEPS = np.float32(0.1), 50


@pytest.mark.parametrize('norm, eps, scale', [('linf', 0.1, 8.0), ('l2', 0.2, 1.5)])
def test_apgd_single_run_matches_the_reference_step_by_step(norm, eps, scale):
  eps = np.float32(eps)
  model = TinyMLP(scale=scale, out_scale=0.3)  # Losses far from 0: no float32 rounding ties.
  x = batch()
  y = np.argmax(model.logits_and_grad(x, np_ce(np.zeros(len(x), int)))[0], 1)
  start = np.asarray(attacks.apgd_start(jax.random.key(3), jnp.asarray(x), eps, norm))
  inside = (x > eps).all(1) & (x < 1 - eps).all(1)  # Where [0, 1] does not clip the start.
  size = np.abs(start - x).max(1) if norm == 'linf' else l2(start - x)[:, 0]
  np.testing.assert_allclose(size[inside], eps, rtol=1e-5)  # On the sphere, not inside.
  x_best, acc, loss_best, x_best_adv, trace, why = reference_single_run(
      model, x, y, start, eps, STEPS, np_ce(y), norm)
  run = attacks.apgd_run(model.predict_jax, attacks.cross_entropy, jnp.asarray(x),
                         jnp.asarray(y), jnp.asarray(y), jnp.asarray(start), eps=eps,
                         steps=STEPS, norm=norm)
  np.testing.assert_allclose(run.step_sizes, trace, rtol=1e-6)
  # The rule's branches are taken: halving for oscillation, keeping the step, and (L2) halving
  # for no improvement since the last checkpoint alone; never that at the first checkpoint.
  oscillation, no_improvement = (np.stack(flags) for flags in zip(*why))
  assert oscillation.any() and (~oscillation & ~no_improvement).any()
  assert not no_improvement[0].any()
  if norm == 'l2':
    assert (no_improvement & ~oscillation).any()
  # Same best loss and fooling flags; the points agree up to float32 rounding, which two
  # implementations accumulate differently (L2 steps) or resolve differently where two iterates
  # tie in loss (tiny late L-inf steps): most to 1e-4, all to 2e-3.
  np.testing.assert_allclose(run.loss_best, loss_best, rtol=1e-4)
  np.testing.assert_allclose(model.logits_and_grad(np.asarray(run.x_best), np_ce(y))[1],
                             loss_best, rtol=1e-4)
  np.testing.assert_array_equal(run.fooled, ~acc.astype(bool))
  assert 0 < run.fooled.sum() < len(x)
  for got, expected in ((run.x_best, x_best), (run.x_fooling, x_best_adv)):
    error = np.abs(np.asarray(got) - expected).max(1)
    assert error.max() < 2e-3 and np.mean(error < 1e-4) >= 0.75, error


def test_apgd_restarts_keep_the_first_fooling_run_and_the_clean_image_elsewhere():
  model = TinyMLP()
  x = batch(seed=2)
  y = np.argmax(model.logits_and_grad(x, np_ce(np.zeros(len(x), int)))[0], 1)
  y[:2] = (y[:2] + 1) % CLASSES  # Two examples misclassified from the start: never attacked.
  rng, restarts = jax.random.key(5), 3
  xj = jnp.asarray(x, jnp.float32)
  starts = [np.asarray(attacks.apgd_start(jax.random.fold_in(rng, i), xj, EPS, 'linf'))
            for i in range(restarts)]
  expected, traces = reference_perturb(model, x, y, starts, EPS, STEPS, np_ce)
  got = attacks.apgd(model.predict_jax, xj, jnp.asarray(y), rng, eps=EPS, steps=STEPS,
                     restarts=restarts)
  np.testing.assert_allclose(got, expected, atol=1e-5)
  # Every branch is taken: fooled in the first run, fooled only by a later restart, never
  # fooled (clean image back), misclassified from the start (clean image back).
  fooled_first = np.setdiff1d(traces[0][0], traces[1][0])
  assert fooled_first.size and len(traces) == restarts
  assert np.setdiff1d(traces[1][0], traces[2][0]).size + np.setdiff1d(
      traces[2][0], np.flatnonzero(np.any(expected != x, 1))).size > 0
  changed = np.any(np.asarray(got) != xj, 1)
  assert not changed[:2].any() and changed.any() and not changed[2:].all()


def test_apgd_targeted_matches_the_reference_target_order():
  model = TinyMLP(seed=4)
  x = batch(seed=3)
  y = np.argmax(model.logits_and_grad(x, np_ce(np.zeros(len(x), int)))[0], 1)
  rng, num_targets = jax.random.key(9), 3
  xj = jnp.asarray(x, jnp.float32)
  starts = [np.asarray(attacks.apgd_start(jax.random.fold_in(jax.random.fold_in(rng, t), 0), xj,
                                          EPS, 'linf')) for t in range(num_targets)]
  expected, traces = reference_perturb(model, x, y, starts, EPS, STEPS, np_dlr_targeted,
                                       targets_per_run=list(range(num_targets)))
  got = attacks.apgd_targeted(model.predict_jax, xj, jnp.asarray(y), rng, eps=EPS, steps=STEPS,
                              num_targets=num_targets)
  np.testing.assert_allclose(got, expected, atol=1e-5)
  assert len(traces) >= 2 and np.any(np.asarray(got) != xj)  # A second target was needed.


# ------------------------------------------------------------------ FAB-T

def test_fab_projection_is_the_minimal_linf_step_inside_the_box():
  rng = np.random.default_rng(0)
  t = rng.uniform(0, 1, (6, FEATURES))
  w = rng.normal(size=(6, FEATURES))
  w[0, :3] = 0.0  # Zero weights never move.
  b = (w * t).sum(1) + rng.normal(size=6) * 0.8  # Some rows need the box, some do not.
  d = np.asarray(attacks.project_linf_hyperplane(jnp.asarray(t, jnp.float32),
                                                 jnp.asarray(w, jnp.float32),
                                                 jnp.asarray(b, jnp.float32)))
  assert np.all(d[0, :3] == 0)
  for row in range(6):  # min s  s.t.  |d_i| <= s, w.d = b - w.t, 0 <= t + d <= 1.
    cost = np.r_[np.zeros(FEATURES), 1.0]
    bounds = [(-ti, 1 - ti) for ti in t[row]] + [(0, None)]
    a_ub = np.block([[np.eye(FEATURES), -np.ones((FEATURES, 1))],
                     [-np.eye(FEATURES), -np.ones((FEATURES, 1))]])
    lp = optimize.linprog(cost, A_ub=a_ub, b_ub=np.zeros(2 * FEATURES),
                          A_eq=np.r_[w[row], 0.0][None], b_eq=[b[row] - w[row] @ t[row]],
                          bounds=bounds)
    if lp.status == 0:  # Reachable inside the box: on the plane at the minimal distance.
      assert abs(w[row] @ (t[row] + d[row]) - b[row]) < 1e-4
      np.testing.assert_allclose(np.abs(d[row]).max(), lp.x[-1], rtol=1e-4)
    assert np.all(t[row] + d[row] >= -1e-6) and np.all(t[row] + d[row] <= 1 + 1e-6)


def linear_model(seed=0, classes=CLASSES):
  rng = np.random.default_rng(seed)
  w, b = rng.normal(size=(FEATURES, classes)), rng.normal(size=classes) * 0.1
  wj, bj = jnp.asarray(w, jnp.float32), jnp.asarray(b, jnp.float32)
  return (lambda x: x @ wj + bj), w, b


def test_fab_targeted_finds_the_closed_form_boundary_of_a_linear_model():
  predict, w, b = linear_model()
  x = np.random.default_rng(1).uniform(0.35, 0.65, (32, FEATURES))  # The box stays inactive.
  z = x @ w + b
  y = z.argmax(1)
  # Distance to "target beats y" for each target, in the reference's target order.
  order = np.argsort(z, 1)[:, ::-1][:, 1:]
  gap = z[np.arange(32)[:, None], y[:, None]] - np.take_along_axis(z, order, 1)
  dual_norm = np.abs(w[:, y].T[:, None, :] - w[:, order].transpose(1, 2, 0)).sum(-1)
  distance = gap / dual_norm  # [N, targets]: the minimal L-inf perturbation per target.
  xj, yj = jnp.asarray(x, jnp.float32), jnp.asarray(y)
  adv, found = attacks.fab_targeted_run(predict, xj, yj, jnp.asarray(order[:, 0]), steps=30)
  # FAB's first step lands 5% past the hyperplane (eta = 1.05); later ones only get closer.
  assert np.all(np.asarray(found) >= distance[:, 0] * (1 - 1e-4))
  assert np.all(np.asarray(found) <= distance[:, 0] * 1.05 * (1 + 1e-4))
  eps = float(np.median(distance.min(1)))
  x_adv = np.asarray(attacks.fab_targeted(predict, xj, yj, eps=eps, steps=30))
  size = np.abs(x_adv - x).max(1)
  fooled = (x_adv @ w + b).argmax(1) != y
  assert size.max() <= eps * (1 + 1e-5)
  assert np.all(fooled[distance.min(1) < eps / 1.05])  # The margin allows it: found.
  assert not np.any(fooled[distance.min(1) > eps])      # Impossible within eps: clean image.
  np.testing.assert_array_equal(x_adv[~fooled], x[~fooled].astype(np.float32))


# ------------------------------------------------------------------ Square

def reference_p_selection(it, p_init=0.8):
  if 10 < it <= 50:
    return p_init / 2
  elif 50 < it <= 200:
    return p_init / 4
  elif 200 < it <= 500:
    return p_init / 8
  elif 500 < it <= 1000:
    return p_init / 16
  elif 1000 < it <= 2000:
    return p_init / 32
  elif 2000 < it <= 4000:
    return p_init / 64
  elif 4000 < it <= 6000:
    return p_init / 128
  elif 6000 < it <= 8000:
    return p_init / 256
  elif 8000 < it:
    return p_init / 512
  return p_init


def test_square_p_schedule_and_square_sides_match_the_reference():
  assert [attacks.p_schedule(i) for i in range(10000)] == [reference_p_selection(i)
                                                          for i in range(10000)]
  sides = attacks.square_sides(5000, 32, 32)
  expected = [min(max(int(round(np.sqrt(reference_p_selection(i) * 32 * 32 * 3 / 3))), 1), 32)
              for i in range(5000)]
  np.testing.assert_array_equal(sides, expected)
  assert sides[0] == 29 and sides[-1] == 3


def corner_model(eps):
  """Class 1 wins once the 2x2x3 top-left corner rises by a threshold in total: a decision that
  only a perturbation of that corner can flip. The threshold is 9.5 eps (11 of the 12 corner
  coordinates at +eps) where pixel (5, 5, 0) is dark, 12.5 eps (beyond eps) where it is bright."""
  def predict(x):
    corner = jnp.sum(x[:, :2, :2, :] - 0.5, axis=(1, 2, 3))
    threshold = jnp.where(x[:, 5, 5, 0] < 0.5, 9.5 * eps, 12.5 * eps)
    return jnp.stack([jnp.zeros_like(corner), corner - threshold], -1)
  return predict


def test_square_fools_a_model_that_needs_a_corner_perturbation():
  eps = 0.05
  x = jax.random.uniform(jax.random.key(0), (8, 6, 6, 3))
  x = x.at[:, :2, :2, :].set(0.5).at[:, 3:, 3:, 1].set(1.0)  # Some pixels on the box edge.
  breakable = jnp.arange(8) < 5
  x = x.at[:, 5, 5, 0].set(jnp.where(breakable, 0.2, 0.8))
  predict = corner_model(eps)
  y = jnp.zeros(8, jnp.int32)
  assert bool(jnp.all(jnp.argmax(predict(x), -1) == 0))
  x_adv = attacks.square_linf(predict, x, y, jax.random.key(1), eps=eps, n_queries=300)
  fooled = np.asarray(jnp.argmax(predict(x_adv), -1) == 1)
  np.testing.assert_array_equal(fooled, breakable)
  assert float(jnp.abs(x_adv - x).max()) <= eps + 1e-6
  assert float(x_adv.min()) >= 0 and float(x_adv.max()) <= 1
  # Beyond what eps allows: nothing found, the clean image comes back.
  np.testing.assert_array_equal(x_adv[~breakable], x[~breakable])


# ------------------------------------------------------------------ the standard ensemble

def test_autoattack_cascade_equals_the_union_of_its_attacks_and_is_an_attack_spec():
  model = TinyMLP(seed=6)
  x = jnp.asarray(batch(seed=4, n=32), jnp.float32).reshape(32, 2, 2, 2)
  predict = lambda v: model.predict_jax(v.reshape(v.shape[0], -1))
  y = jnp.argmax(predict(x), -1).at[0].add(1) % CLASSES  # One misclassified from the start.
  rng, eps = jax.random.key(2), 0.03

  @jax.jit
  def cascade_and_alone(x):
    stages = attacks.autoattack_stages(predict, x, y, rng, eps=eps, steps=6, n_queries=40)
    alone = [attacks.apgd(predict, x, y, rng, eps=eps, steps=6),
             attacks.apgd_targeted(predict, x, y, rng, eps=eps, steps=6),
             attacks.fab_targeted(predict, x, y, eps=eps, steps=6),
             attacks.square_linf(predict, x, y, rng, eps=eps, n_queries=40)]
    return stages, alone

  stages, alone = cascade_and_alone(x)
  correct = lambda v: np.asarray(jnp.argmax(predict(v), -1) == y)
  assert list(stages) == ['apgd_ce', 'apgd_t', 'fab_t', 'square']  # The reference's order.
  robust = [correct(x)] + [correct(stages[name]) for name in stages]
  assert all(np.all(later <= earlier) for earlier, later in zip(robust, robust[1:]))
  # Each attack alone on the whole batch fools the same examples as in the cascade, where it
  # sees only the examples the earlier ones left: the cascade loses nothing.
  union = np.logical_and.reduce([correct(a) for a in alone] + [correct(x)])
  np.testing.assert_array_equal(robust[-1], union)
  assert robust[-1].sum() < robust[0].sum() and robust[-1].any()
  assert float(jnp.abs(stages['square'] - x).max()) <= eps + 1e-6
  np.testing.assert_array_equal(stages['square'][0], x[0])  # Misclassified: left as it is.
  # The robustness evaluator's spec: 'autoattack' runs this function with the standard budget.
  spec = attacks.parse_attack('aa', "autoattack(version='standard', steps=6, n_queries=40)")
  assert attacks.ATTACKS[spec.kind][0] is attacks.autoattack
  assert spec.settings() == {'version': 'standard', 'steps': 6, 'n_queries': 40}
  assert attacks.parse_attack('aa', 'autoattack').settings() == {
      'version': 'standard', 'steps': 100, 'n_queries': 5000}
  with pytest.raises(ConfigError, match='linf'):
    attacks.autoattack(predict, x, y, rng, eps=0.5, norm='l2')
  with pytest.raises(ConfigError, match='version'):
    attacks.autoattack(predict, x, y, rng, eps=eps, version='plus')
