"""CADet (paper 9): the MMD² against a NumPy transcription, permutation p-values under the null,
NT-Xent against a direct transcription, SimCLR on 8 devices = 1, the contrastive augmentation
ops, LARS, CADet score identities and invariances, and the CIFAR-10.1 reader's error."""

import chex
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from scipy import stats

from jaxcv import config as config_lib
from jaxcv import optim, parallel
from jaxcv.cadet import data as cadet_data
from jaxcv.cadet import mmd, score
from jaxcv.data import augment
from jaxcv.data.contrastive import crop_boxes
from jaxcv.errors import ConfigError, DatasetNotFoundError
from jaxcv.ood.detectors import build_detector
from jaxcv.data.dataset import DataInfo
from jaxcv.tasks import build_task
from jaxcv.tasks.simclr import nt_xent


# ------------------------------------------------------------------------------ MMD test

def mmd2_reference(k: np.ndarray, m: int) -> float:
  """The unbiased MMD² as written in the spec, with explicit loops."""
  n = len(k) - m
  xx = sum(k[i, j] for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
  yy = sum(k[i, j] for i in range(m, m + n) for j in range(m, m + n) if i != j) / (n * (n - 1))
  xy = sum(k[i, j] for i in range(m) for j in range(m, m + n)) / (m * n)
  return xx + yy - 2 * xy


def test_mmd2_matches_numpy_reference():
  rng = np.random.default_rng(0)
  pooled = np.concatenate([rng.normal(size=(7, 5)), rng.normal(0.5, 1, size=(9, 5))])
  for kernel in (mmd.cosine_kernel, mmd.gaussian_kernel):
    k = np.asarray(kernel(jnp.asarray(pooled, jnp.float32)), np.float64)
    assert float(mmd.mmd2_unbiased(jnp.asarray(k), 7)) == pytest.approx(mmd2_reference(k, 7),
                                                                          abs=1e-5)
    order = rng.permutation(16)  # Any split given as an indicator vector.
    assign = np.zeros(16, bool)
    assign[order[:7]] = True
    expected = mmd2_reference(k[np.ix_(order, order)], 7)
    got = mmd.mmd2_from_assignments(jnp.asarray(k), jnp.asarray(assign)[None])[0]
    assert float(got) == pytest.approx(expected, abs=1e-5)
  # A plain cosine kernel: the biased MMD² is the squared distance of the mean embeddings.
  z = pooled / np.linalg.norm(pooled, axis=1, keepdims=True)
  k = z @ z.T
  biased = k[:7, :7].mean() + k[7:, 7:].mean() - 2 * k[:7, 7:].mean()
  assert biased == pytest.approx(np.sum((z[:7].mean(0) - z[7:].mean(0)) ** 2))


def test_gaussian_kernel_uses_the_median_distance():
  x = np.random.default_rng(1).normal(size=(6, 4)).astype(np.float32)
  d = np.sqrt(((x[:, None] - x[None]) ** 2).sum(-1))
  sigma = np.median(d[~np.eye(6, dtype=bool)])
  np.testing.assert_allclose(mmd.gaussian_kernel(jnp.asarray(x)),
                             np.exp(-d ** 2 / (2 * sigma ** 2)), atol=1e-5)
  with pytest.raises(ConfigError, match='unknown MMD kernel'):
    mmd.kernel_fn('laplace')


def test_permutation_pvalues_are_uniform_under_the_null_and_reject_a_shift():
  rng = np.random.default_rng(2)
  key = jax.random.key(0)
  null_p, alt_p = [], []
  for trial in range(150):
    x, y, shifted = rng.normal(size=(3, 12, 3))
    for pvalues, second in ((null_p, y), (alt_p, shifted + 1.5)):
      k = mmd.gaussian_kernel(jnp.asarray(np.concatenate([x, second]), jnp.float32))
      pvalues.append(float(mmd.permutation_test(k, 12, jax.random.fold_in(key, trial), 49)[1]))
  null_p = np.asarray(null_p)
  assert stats.kstest(null_p, 'uniform').pvalue > 0.01
  assert 0.01 <= np.mean(null_p <= 0.05) <= 0.11  # Type I ~ alpha.
  assert np.mean(np.asarray(alt_p) <= 0.05) > 0.9  # Power against a 1.5-sigma mean shift.
  assert null_p.min() >= 1 / 50  # p = (1 + #{>=}) / (B + 1) is never 0.


def test_power_curve_counts_rejections():
  rng = np.random.default_rng(3)
  x, y = rng.normal(size=(40, 4)), rng.normal(size=(40, 4)) + 2.0
  curve = mmd.power_curve(x, y, 'gaussian', (5, 20, 80), trials=5, permutations=19)
  assert set(curve) == {5, 20}  # 80 exceeds the pools.
  assert curve[20]['rate'] == 1.0 and 0 <= curve[5]['rate'] <= 1


# ------------------------------------------------------------------------------ SimCLR

def nt_xent_reference(z1: np.ndarray, z2: np.ndarray, tau: float) -> float:
  """SimCLR's equation (1), view by view."""
  z = np.concatenate([z1, z2])
  z = z / np.linalg.norm(z, axis=1, keepdims=True)
  n = len(z1)
  losses = []
  for k in range(2 * n):
    positive = (k + n) % (2 * n)
    denominator = sum(np.exp(z[k] @ z[j] / tau) for j in range(2 * n) if j != k)
    losses.append(-np.log(np.exp(z[k] @ z[positive] / tau) / denominator))
  return float(np.mean(losses))


def test_nt_xent_matches_transcription():
  rng = np.random.default_rng(4)
  z1, z2 = rng.normal(size=(2, 6, 5))
  for tau in (0.5, 0.1):
    loss, accuracy = nt_xent(jnp.asarray(z1), jnp.asarray(z2), tau)
    assert float(loss) == pytest.approx(nt_xent_reference(z1, z2, tau), rel=1e-5)
  loss, accuracy = nt_xent(jnp.asarray(z1), jnp.asarray(z1 * 3), 0.1)  # Views agree exactly.
  assert float(accuracy) == 1.0 and float(loss) < nt_xent_reference(z1, z2, 0.1)


def test_simclr_loss_on_eight_devices_matches_one():
  """NT-Xent's negatives (and the v2 head's BatchNorm statistics) span the global batch: the
  loss and its gradient are the same with the batch sharded over 8 devices as on one."""
  config = config_lib.load('configs/cadet/simclr.py:preset=runlocal,head=v2')
  config.model.name = 'mlp'  # A small encoder: the test is about the loss, not the network.
  config.model.kwargs = ml_collections.ConfigDict({'hidden': (16,)})
  task = build_task(config, DataInfo(num_classes=4, image_shape=(8, 8, 3), num_train_examples=16))
  params, model_state = task.init_variables(jax.random.key(0))
  images = jax.random.uniform(jax.random.key(1), (16, 8, 8, 3))
  batch = task.augment(jax.random.key(2), {'image': images})
  assert batch['image'].shape == (32, 8, 8, 3)
  loss_and_grad = jax.jit(jax.value_and_grad(
      lambda p, b: task.loss(p, model_state, None, b, jax.random.key(3))[0]))
  one = loss_and_grad(params, jax.device_put(batch, jax.devices()[0]))
  mesh = parallel.make_mesh(config.mesh)
  assert mesh.size == 8
  sharded = jax.device_put(batch, parallel.batch_sharding(mesh))
  eight = loss_and_grad(jax.device_put(params, parallel.replicated(mesh)), sharded)
  assert float(one[0]) == pytest.approx(float(eight[0]), rel=1e-5)
  chex.assert_trees_all_close(one[1], eight[1], rtol=1e-4, atol=1e-6)
  assert 'BatchNorm_0' in params['projection']


# ------------------------------------------------------------------------------ augmentation

def test_contrastive_ops():
  rng = jax.random.key(5)
  x = jax.random.uniform(rng, (4, 12, 12, 3))
  full = augment.build('resized_crop(scale=(1.0, 1.0), ratio=(1.0, 1.0))')(rng, x)
  np.testing.assert_allclose(full, x, atol=1e-5)  # The whole image, resized to itself.
  crops = augment.build('resized_crop(scale=(0.2, 0.5))')(rng, x)
  assert crops.shape == x.shape and not np.allclose(crops, x)
  boxes = np.asarray(crop_boxes(rng, 100, 12, 12, (0.1, 1.0), (0.5, 2.0)))
  assert (boxes[:, 0] + boxes[:, 2] <= 12).all() and (boxes[:, 1] + boxes[:, 3] <= 12).all()
  np.testing.assert_allclose(augment.build('color_jitter(strength=0.0, p=1.0)')(rng, x), x,
                             atol=1e-5)
  np.testing.assert_array_equal(augment.build('color_jitter(p=0.0)')(rng, x), x)
  jittered = augment.build('color_jitter(strength=1.0, p=1.0)')(rng, x)
  assert float(jittered.min()) >= 0 and float(jittered.max()) <= 1 and not np.allclose(jittered, x)
  gray = augment.build('random_grayscale(p=1.0)')(rng, x)
  np.testing.assert_allclose(gray[..., 0], gray[..., 2])
  constant = jnp.full((2, 12, 12, 3), 0.3)
  np.testing.assert_allclose(augment.build('blur(p=1.0)')(rng, constant), constant, atol=1e-6)
  blurred = augment.build('blur(p=1.0, sigma=(2.0, 2.0))')(rng, x)
  assert float(jnp.std(blurred)) < float(jnp.std(x))
  with pytest.raises(ConfigError, match='scale'):
    augment.build('resized_crop(scale=(0.5, 0.2))')
  with pytest.raises(ConfigError, match='probability'):
    augment.build('random_grayscale(p=2.0)')


def test_lars_skips_trust_ratio_and_decay_outside_the_mask():
  config = config_lib.base_config()
  config.optimizer.update(name='lars', weight_decay=0.1, momentum=0.0, nesterov=False,
                          decay_norm_and_bias=False)
  tx = optim.build_optimizer(config, lambda step: 0.5)
  params = {'kernel': jnp.full((2, 2), 2.0), 'bias': jnp.full((2,), 2.0)}
  grads = {'kernel': jnp.full((2, 2), 0.1), 'bias': jnp.full((2,), 0.1)}
  updates, _ = tx.update(grads, tx.init(params), params)
  np.testing.assert_allclose(updates['bias'], -0.5 * 0.1)  # Plain SGD.
  g = 0.1 + 0.1 * 2.0  # Decayed gradient; trust ratio |w| / |g| (optax's default eta = 1e-3).
  ratio = 0.001 * np.linalg.norm(np.full((2, 2), 2.0)) / np.linalg.norm(np.full((2, 2), g))
  np.testing.assert_allclose(updates['kernel'], -0.5 * ratio * g, rtol=1e-5)


# ------------------------------------------------------------------------------ CADet score

def pixel_embed(variables, images):
  """A fixed 'encoder': a linear map of the pixels (variables: [H*W*C, d])."""
  return images.reshape(images.shape[0], -1) @ variables


def test_m_in_closed_form_equals_pairwise_average():
  z = np.random.default_rng(6).normal(size=(3, 5, 4))
  z /= np.linalg.norm(z, axis=2, keepdims=True)
  expected = [np.mean([z[i, a] @ z[i, b] for a in range(5) for b in range(5) if a != b])
              for i in range(3)]
  np.testing.assert_allclose(score.m_in(jnp.asarray(z)), expected, atol=1e-6)
  np.testing.assert_allclose(score.m_in(jnp.asarray(z[:, ::-1])), expected, atol=1e-6)


def test_cadet_scores_are_invariant_to_rotation_and_scale_of_the_embedding():
  rng = np.random.default_rng(7)
  images = rng.integers(0, 256, (30, 8, 8, 3), dtype=np.uint8)
  w = jnp.asarray(rng.normal(size=(192, 6)), jnp.float32)
  q, _ = np.linalg.qr(rng.normal(size=(6, 6)))
  key = jax.random.key(1)

  def scores(weights):
    det = build_detector('cadet(n_views=4)')
    det.fit_images(pixel_embed, weights, images[:20], key)
    return det, det.score_terms(pixel_embed, weights, images[20:], jax.random.key(2))

  det, base = scores(w)
  for other in (w @ jnp.asarray(q, jnp.float32), 3.0 * w):
    _, got = scores(other)
    for term in score.TERMS:
      np.testing.assert_allclose(got[term], base[term], rtol=1e-4, atol=1e-5)
  # gamma matches the two terms' spread on X_val2; p-values are monotone in the score.
  cal = det.calibration
  assert np.std(cal.val2_scores['m_in']) == pytest.approx(
      cal.gamma * np.std(cal.val2_scores['m_out']), rel=1e-6)
  s = base['cadet']
  p = det.p_values(s)
  assert ((0 < p) & (p <= 1)).all() and (np.diff(p[np.argsort(s)]) >= 0).all()
  # An encoder blind to the image: every view agrees, so m_in = 1.
  blind = lambda v, x: jnp.ones((x.shape[0], 6)) + 0 * jnp.mean(x)
  det = build_detector('cadet(n_views=3)').fit_images(blind, None, images[:20], key)
  for term in ('m_in', 'm_out'):
    np.testing.assert_allclose(det.score_terms(blind, None, images[20:], key)[term], 1.0,
                               rtol=1e-5)


def test_cadet_detector_protocol():
  det = build_detector('cadet(term="m_in", n_views=5)')
  assert det.spec == "cadet(term='m_in', n_views=5)" and 'images' in det.requires
  with pytest.raises(ConfigError, match='term must be one of'):
    build_detector('cadet(term="both")')
  with pytest.raises(ConfigError, match='fit_images'):
    det.fit(None)
  with pytest.raises(RuntimeError, match='fit_images'):
    det.score_images(pixel_embed, None, np.zeros((2, 4, 4, 3), np.uint8), jax.random.key(0))


def test_cifar10_1_reader(tmp_path):
  with pytest.raises(DatasetNotFoundError, match='cifar10.1_v4_data.npy'):
    cadet_data.load_cifar10_1(str(tmp_path))
  folder = tmp_path / 'cifar10.1'
  folder.mkdir()
  np.save(folder / 'cifar10.1_v4_data.npy', np.zeros((5, 32, 32, 3), np.uint8))
  np.save(folder / 'cifar10.1_v4_labels.npy', np.arange(5))
  data = cadet_data.load_cifar10_1(str(tmp_path))
  assert data.images.shape == (5, 32, 32, 3) and list(data.labels) == [0, 1, 2, 3, 4]


def test_disjoint_draws_share_no_index():
  pool = np.arange(30, dtype=np.float32)[:, None]
  x, y = mmd._draw_disjoint(np.random.default_rng(0), pool, pool + 100, 10)  # pylint: disable=protected-access
  assert not set(x[:, 0]) & set(y[:, 0] - 100)
  with pytest.raises(ConfigError, match='two disjoint samples'):
    mmd._draw_disjoint(np.random.default_rng(0), pool, pool, 16)  # pylint: disable=protected-access
  null = mmd.power_curve(pool, pool, 'gaussian', (5, 20), trials=3, permutations=9,
                         disjoint=True)
  assert set(null) == {5}  # Two disjoint samples of 20 need 40 images.
