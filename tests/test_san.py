"""SAN (docs/san.md): losses against direct transcriptions, cluster-usage and geometry metrics on
hand-made inputs, the two-view inverse, the tasks' state, and the runlocal table through the
sweep on synthetic texture regions."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxcv import config as config_lib
from jaxcv import sweep
from jaxcv.san import losses, views
from jaxcv.san.tasks import PiCIETask, SANTask
from jaxcv.segmentation import clusters
from jaxcv.tasks import DataInfo

from conftest import REPO_ROOT

TABLE = str(REPO_ROOT / 'configs' / 'san' / 'table.py')


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
  monkeypatch.setenv('JAXCV_CACHE_DIR', str(tmp_path / 'cache'))


def _probabilities(rng, shape):
  x = rng.random(shape) * 3
  return np.exp(x) / np.exp(x).sum(-1, keepdims=True)


# ------------------------------------------------------------------ losses

def iic_reference(x1, x2, mask, half_t, lamb):
  """IIC's IID_segmentation_loss (xu-ji/IIC, code/utils/segmentation/IID_losses.py) in numpy
  with explicit loops: p_i_j = conv2d(x1 [K, N, h, w], weight=x2 [K, N, h, w], padding=T)
  summed over the displacement grid, normalised, symmetrised, EPS-clamped."""
  eps = np.finfo(np.float64).eps
  x1 = (x1 * mask[..., None]).transpose(3, 0, 1, 2)
  x2 = (x2 * mask[..., None]).transpose(3, 0, 1, 2)
  k, n, h, w = x1.shape
  padded = np.zeros((k, n, h + 2 * half_t, w + 2 * half_t))
  padded[:, :, half_t:half_t + h, half_t:half_t + w] = x1
  p = np.zeros((k, k))
  for oy in range(2 * half_t + 1):
    for ox in range(2 * half_t + 1):
      for i in range(k):
        for j in range(k):
          p[i, j] += np.sum(padded[i, :, oy:oy + h, ox:ox + w] * x2[j])
  p = p / p.sum()
  p = (p + p.T) / 2
  p_i, p_j = p.sum(1, keepdims=True), p.sum(0, keepdims=True)
  p[p < eps] = eps
  p_i[p_i < eps] = eps
  p_j[p_j < eps] = eps
  return -np.sum(p * (np.log(p) - lamb * np.log(p_i) - lamb * np.log(p_j)))


def test_iic_loss_matches_the_official_formula():
  rng = np.random.default_rng(0)
  p1, p2 = _probabilities(rng, (2, 5, 6, 4)), _probabilities(rng, (2, 5, 6, 4))
  mask = (rng.random((2, 5, 6)) > 0.2).astype(np.float64)
  for half_t, lamb in ((0, 1.0), (1, 1.0), (2, 1.5)):
    got = losses.iic_loss(jnp.asarray(p1), jnp.asarray(p2), half_t, lamb, jnp.asarray(mask))
    np.testing.assert_allclose(float(got), iic_reference(p1, p2, mask, half_t, lamb), rtol=1e-4,
                               atol=1e-6)
  # Identical one-hot views over K equally used clusters: the MI is log K, the loss -log K.
  labels = np.arange(24).reshape(2, 3, 4) % 4
  onehot = np.eye(4)[labels]
  got = losses.iic_loss(jnp.asarray(onehot), jnp.asarray(onehot), 0)
  np.testing.assert_allclose(float(got), -np.log(4), rtol=1e-5)


def test_san_losses_match_direct_formulas():
  rng = np.random.default_rng(1)
  f, g = rng.normal(size=(2, 3, 4, 5)), rng.normal(size=(2, 3, 4, 5))
  np.testing.assert_allclose(float(losses.consistency_loss(f, g)),
                             np.mean(np.sum((f - g) ** 2, -1)), rtol=1e-6)
  x, y = rng.random((2, 8, 8, 3)), rng.random((2, 8, 8, 3))
  np.testing.assert_allclose(float(losses.reconstruction_loss(x, y)), np.mean((x - y) ** 2),
                             rtol=1e-6)
  s = rng.normal(size=(4, 6))
  sn = s / np.linalg.norm(s, axis=1, keepdims=True)
  np.testing.assert_allclose(float(losses.orthogonality_loss(s)),
                             np.sum((sn @ sn.T - np.eye(4)) ** 2), rtol=1e-5)
  assert float(losses.orthogonality_loss(3.0 * np.eye(4, 6))) == pytest.approx(0.0, abs=1e-6)
  # Collapsed centres (all the same direction): every off-diagonal entry is 1.
  assert float(losses.orthogonality_loss(np.ones((4, 6)))) == pytest.approx(12.0, rel=1e-5)


def test_picie_loss_matches_cross_entropies():
  rng = np.random.default_rng(2)
  l1, l2 = rng.normal(size=(2, 3, 3, 5)), rng.normal(size=(2, 3, 3, 5))
  y1, y2 = rng.integers(0, 5, (2, 3, 3)), rng.integers(0, 5, (2, 3, 3))
  mask = (rng.random((2, 3, 3)) > 0.3).astype(np.float64)

  def ce(logits, labels):
    logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    nll = -np.take_along_axis(logp, labels[..., None], -1)[..., 0]
    return np.sum(nll * mask) / mask.sum()
  within, cross = losses.picie_loss(l1, l2, y1, y2, mask)
  np.testing.assert_allclose(float(within), (ce(l1, y1) + ce(l2, y2)) / 2, rtol=1e-5)
  np.testing.assert_allclose(float(cross), (ce(l1, y2) + ce(l2, y1)) / 2, rtol=1e-5)


# ------------------------------------------------------------------ metrics

def test_cluster_usage_on_hand_made_counts():
  used = clusters.cluster_usage([10, 0, 0, 10])
  assert used['clusters_used'] == 2
  assert used['cluster_entropy'] == pytest.approx(np.log(2))
  assert used['cluster_entropy_norm'] == pytest.approx(0.5)
  assert clusters.cluster_usage([5, 5, 5])['cluster_entropy_norm'] == pytest.approx(1.0)
  assert clusters.cluster_usage([1000, 0, 0])['cluster_entropy_norm'] == 0.0
  # A cluster with 1 pixel in 2001 (< 0.1%) is not in use at min_share=0.001.
  assert clusters.cluster_usage([1000, 1000, 1], min_share=0.001)['clusters_used'] == 2
  assert clusters.cluster_usage([1000, 1000, 1])['clusters_used'] == 3
  assert np.isnan(clusters.cluster_usage([0, 0])['clusters_used'])


def test_alignment_and_uniformity_match_wang_and_isola():
  rng = np.random.default_rng(3)
  x = rng.normal(size=(40, 8))
  x /= np.linalg.norm(x, axis=1, keepdims=True)
  y = x + 0.1 * rng.normal(size=x.shape)
  # align_loss = (x - y).norm(dim=1).pow(2).mean(); uniform_loss = pdist(x).pow(2).mul(-2).exp()
  # .mean().log(), pdist over the pairs i < j.
  np.testing.assert_allclose(float(clusters.alignment(x, y)),
                             np.mean(np.linalg.norm(x - y, axis=1) ** 2), rtol=1e-5)
  i, j = np.triu_indices(len(x), k=1)
  pdist = np.linalg.norm(x[i] - x[j], axis=1)
  np.testing.assert_allclose(float(clusters.uniformity(x)),
                             np.log(np.mean(np.exp(-2 * pdist ** 2))), rtol=1e-4)
  # Total collapse: uniformity 0; spread points: clearly negative.
  assert float(clusters.uniformity(np.tile(x[:1], (10, 1)))) == pytest.approx(0.0, abs=1e-5)
  assert float(clusters.uniformity(x)) < -1.0


# ------------------------------------------------------------------ views

def test_second_view_maps_back_exactly():
  rng = jax.random.PRNGKey(0)
  features = jax.random.normal(rng, (6, 8, 10, 3))
  o = views.ViewOptions(max_shift=3)
  t = views.sample_transform(jax.random.PRNGKey(1), 6, o)
  assert np.asarray(t.flip).any() and np.abs(np.asarray(t.shift)).max() > 0
  moved = views.apply_transform(features, t, stride=1, fill=0.0)
  back, mask = views.to_first_view(moved, t)
  mask = np.asarray(mask).astype(bool)
  np.testing.assert_allclose(np.asarray(back)[mask], np.asarray(features)[mask], rtol=1e-6)
  # The mask is exactly the cells view 2 saw: (8 - |dy|) x (10 - |dx|) per image.
  shift = np.abs(np.asarray(t.shift))
  np.testing.assert_array_equal(mask.sum((1, 2)), (8 - shift[:, 0]) * (10 - shift[:, 1]))


# ------------------------------------------------------------------ tasks

def _task(cls, name, **section):
  config = config_lib.base_config()
  config.task = name
  config.model.kwargs = dict(width=8, dim=8, stride=4, depth=1)
  if cls is SANTask:
    config.model.kwargs.update(vit_hidden=16, vit_depth=1, vit_heads=2, patch=8)
  config[cls.section] = section
  return cls(config, DataInfo(num_classes=4, image_shape=(16, 16, 3), num_train_examples=8))


def test_san_evaluates_with_the_running_semantic_embeddings():
  task = _task(SANTask, 'san', orth=0.1, mi=0.5)  # With the optional IIC term.
  params, state = task.init_variables(jax.random.PRNGKey(0))
  images = jax.random.uniform(jax.random.PRNGKey(1), (4, 16, 16, 3))
  loss_fn = jax.jit(task.loss)
  loss, (metrics, new_state) = loss_fn(params, state, None, {'image': images},
                                       jax.random.PRNGKey(2))
  assert np.isfinite(float(loss))
  assert {'l_con', 'l_rec', 'l_orth', 'l_mi', 'clusters_used'} <= set(metrics)
  running = np.asarray(new_state['semantic']['running'])
  assert not np.allclose(running, 0.0)  # The first batch's S, then a running mean.
  segment = jax.jit(task.predict_fns()['segment'])
  variables = {'params': params, **new_state}
  others = jax.random.uniform(jax.random.PRNGKey(3), (4, 16, 16, 3))
  first = np.asarray(segment(variables, images))[0]
  among_others = np.asarray(segment(variables, others.at[2].set(images[0])))[2]
  np.testing.assert_allclose(first, among_others, rtol=1e-5, atol=1e-5)  # Batch-independent.
  # The total is the weighted sum of the terms (con 1, rec 1, orth 0.1, sem 0, mi 0.5 here).
  expected = (float(metrics['l_con']) + float(metrics['l_rec'])
              + 0.1 * float(metrics['l_orth']) + 0.5 * float(metrics['l_mi']))
  assert float(loss) == pytest.approx(expected, rel=1e-4)


def test_picie_kmeans_moves_centres_and_reseeds_dead_ones():
  task = _task(PiCIETask, 'picie', count_decay=1.0)
  c = np.eye(3, 8)
  features = np.concatenate([np.tile(np.eye(1, 8, 0) + [[0, 1] + [0] * 6], (4, 1)),
                             np.tile(np.eye(1, 8, 2), (4, 1))])
  features /= np.linalg.norm(features, axis=1, keepdims=True)
  kmeans = {'centroids': jnp.asarray(c), 'counts': jnp.asarray([4.0, 4.0, 0.0])}
  out = task.update_centroids(kmeans, jnp.asarray(features), jax.random.PRNGKey(0))
  centroids = np.asarray(out['centroids'])
  # Centre 0 moved half way (4 old + 4 new pixels) towards its pixels' mean, then normalised.
  target = c[0] + 0.5 * (features[0] - c[0])
  np.testing.assert_allclose(centroids[0], target / np.linalg.norm(target), rtol=1e-5)
  # Centre 2 took its 4 pixels (count 0 before): it is at their mean, e_2.
  np.testing.assert_allclose(centroids[2], features[4], rtol=1e-5)
  # Centre 1 had no pixel but a count of 4: kept. With count 0 it would be reseeded at a pixel.
  np.testing.assert_allclose(centroids[1], c[1])
  dead = task.update_centroids({'centroids': jnp.asarray(c), 'counts': jnp.zeros(3)},
                               jnp.asarray(features), jax.random.PRNGKey(0))
  seeded = np.asarray(dead['centroids'])[1]
  assert any(np.allclose(seeded, f) for f in features)


# ------------------------------------------------------------------ the table

def test_runlocal_table_through_the_sweep(tmp_path):
  # SAN and its main baseline (the other rows run the same code paths with other weights or
  # tasks; the notebook's smoke mode runs SAN and PiCIE).
  records = sweep.run_table(TABLE + ':runlocal', str(tmp_path), rows=['san_s0', 'iic_s0'])
  assert [r['status'] for r in records] == ['ok'] * 2, records
  summary = json.loads((tmp_path / 'san_s0' / 'summary.json').read_text())
  for key in ('seg/pixel_accuracy', 'seg/miou', 'seg/clusters_used', 'seg/cluster_entropy_norm',
              'geometry/uniformity', 'geometry/alignment'):
    assert np.isfinite(summary[key]), key
  assert 1 <= summary['seg/clusters_used'] <= 6  # K = the 6 texture classes.
  assert -4.5 < summary['geometry/uniformity'] <= 0.0
  assert (tmp_path / 'san_s0' / 'seg' / 'examples.png').stat().st_size > 1000
  assert (tmp_path / 'san_examples.png').is_file() and (tmp_path / 'san_table.md').is_file()
  assert 'Pixel acc' in (tmp_path / 'table.md').read_text()
