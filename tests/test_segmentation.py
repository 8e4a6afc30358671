"""Segmentation metrics (confusion, Hungarian matching, scores) and the 'segmentation' evaluator."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from PIL import Image

from jaxcv import config as config_lib
from jaxcv import parallel
from jaxcv.errors import ConfigError
from jaxcv.evaluators import EVALUATORS
from jaxcv.evaluators import segmentation as seg_eval
from jaxcv.evaluators.segmentation import SegmentationEvaluator
from jaxcv.segmentation import (confusion_matrix, fold_confusion, hungarian_match,
                                segmentation_scores)
from jaxcv.tasks import DataInfo


def numpy_confusion(pred, label, num_pred, num_classes):
  pred, label = np.ravel(pred), np.ravel(label)
  keep = (label >= 0) & (label < num_classes) & (pred >= 0) & (pred < num_pred)
  out = np.zeros((num_pred, num_classes), np.int64)
  np.add.at(out, (pred[keep], label[keep]), 1)
  return out


# ---------------------------------------------------------------------------------------------
# Metrics
# ---------------------------------------------------------------------------------------------

def test_confusion_matrix_matches_numpy_and_drops_ignored_pixels():
  rng = np.random.default_rng(0)
  pred = rng.integers(0, 5, (3, 7, 9))
  label = rng.integers(0, 4, (3, 7, 9))
  label[rng.random(label.shape) < 0.3] = 255
  label[0, 0, :4] = -1
  fn = jax.jit(confusion_matrix, static_argnums=(2, 3, 4))
  got = np.asarray(fn(pred, label, 5, 4, 255))
  assert got.shape == (5, 4)  # Rows: predictions; columns: true classes.
  np.testing.assert_array_equal(got, numpy_confusion(pred, label, 5, 4))
  assert got.sum() == np.sum((label >= 0) & (label < 4))
  # Ignored pixels predicted as 0 must not land in bin (0, 0).
  all_ignored = np.asarray(confusion_matrix(np.zeros((4, 4), int), np.full((4, 4), 255), 2, 2,
                                            255))
  np.testing.assert_array_equal(all_ignored, np.zeros((2, 2)))
  # An ignore index inside the class range is honoured too.
  np.testing.assert_array_equal(np.asarray(confusion_matrix(np.array([0, 1]), np.array([1, 1]),
                                                            2, 2, ignore_index=1)), 0)


def test_confusion_accumulated_over_batches_equals_one_shot():
  rng = np.random.default_rng(1)
  pred, label = rng.integers(0, 6, (10, 5, 5)), rng.integers(-1, 4, (10, 5, 5))
  batched = sum(np.asarray(confusion_matrix(pred[i:i + 3], label[i:i + 3], 6, 4))
                for i in range(0, 10, 3))
  np.testing.assert_array_equal(batched, np.asarray(confusion_matrix(pred, label, 6, 4)))


def test_hungarian_recovers_a_permutation_exactly():
  rng = np.random.default_rng(2)
  label = rng.integers(0, 5, (4, 16, 16))
  perm = rng.permutation(5)
  confusion = np.asarray(confusion_matrix(perm[label], label, 5, 5))
  mapping = hungarian_match(confusion)
  np.testing.assert_array_equal(mapping[perm], np.arange(5))
  scores = segmentation_scores(confusion, mapping)
  assert scores['pixel_accuracy'] == scores['miou'] == scores['class_accuracy'] == 1.0
  np.testing.assert_array_equal(scores['per_class_iou'], np.ones(5))
  # Unmatched, the same predictions score as the permutation dictates.
  assert segmentation_scores(confusion)['pixel_accuracy'] == pytest.approx(
      np.mean(perm[label] == label))


def test_hungarian_is_invariant_to_relabelling_clusters():
  rng = np.random.default_rng(3)
  label = rng.integers(0, 4, 2000)
  pred = np.where(rng.random(2000) < 0.7, label, rng.integers(0, 4, 2000))
  base = numpy_confusion(pred, label, 4, 4)
  relabelled = numpy_confusion(rng.permutation(4)[pred], label, 4, 4)
  a = segmentation_scores(base, hungarian_match(base))
  b = segmentation_scores(relabelled, hungarian_match(relabelled))
  assert a['pixel_accuracy'] == b['pixel_accuracy'] and a['miou'] == pytest.approx(b['miou'])


def test_overclustering_maps_extra_clusters_by_majority_or_to_nothing():
  # 5 clusters, 3 classes. The best one-to-one: 0->1, 2->0, 3->2 (10 + 8 + 9 = 27);
  # cluster 1 overlaps class 1 most, cluster 4 class 0 most.
  confusion = np.array([[0, 10, 1],
                        [2, 4, 1],
                        [8, 0, 0],
                        [0, 1, 9],
                        [3, 0, 2]])
  np.testing.assert_array_equal(hungarian_match(confusion), [1, 1, 0, 2, 0])
  np.testing.assert_array_equal(hungarian_match(confusion, 'none'), [1, -1, 0, 2, -1])
  total = confusion.sum()  # 41
  majority = segmentation_scores(confusion, hungarian_match(confusion))
  assert majority['pixel_accuracy'] == pytest.approx((10 + 4 + 8 + 3 + 9) / total)
  folded = fold_confusion(confusion, [1, -1, 0, 2, -1])
  np.testing.assert_array_equal(folded, [[8, 0, 0], [0, 10, 1], [0, 1, 9]])  # Rows 1, 4 dropped.
  dropped = segmentation_scores(confusion, hungarian_match(confusion, 'none'))
  assert dropped['pixel_accuracy'] == pytest.approx(27 / total)
  # Class 0: TP 8, predicted 8, actual 13 -> IoU 8/13 (unmapped pixels are its false negatives).
  assert dropped['per_class_iou'][0] == pytest.approx(8 / 13)
  with pytest.raises(ValueError):
    hungarian_match(confusion, 'nearest')


def test_scores_match_hand_computed_values_on_three_classes():
  confusion = np.array([[5, 1, 0],   # Predicted 0.
                        [2, 3, 1],   # Predicted 1.
                        [0, 0, 4]])  # Predicted 2.
  s = segmentation_scores(confusion)
  # Totals: 16 pixels; true counts (columns) 7, 4, 5; predicted counts (rows) 6, 6, 4.
  iou = [5 / (6 + 7 - 5), 3 / (6 + 4 - 3), 4 / (4 + 5 - 4)]
  recall = [5 / 7, 3 / 4, 4 / 5]
  assert s['pixel_accuracy'] == pytest.approx(12 / 16)
  np.testing.assert_allclose(s['per_class_iou'], iou)
  assert s['miou'] == pytest.approx(np.mean(iou))
  assert s['class_accuracy'] == pytest.approx(np.mean(recall))


def test_absent_classes_are_left_out_of_the_means():
  # Class 3 is in neither labels nor predictions (NaN, skipped); class 2 is predicted but never
  # true: IoU 0 counts in mIoU, its recall is undefined and left out of class accuracy.
  confusion = np.array([[4, 0, 0, 0],
                        [1, 3, 0, 0],
                        [0, 2, 0, 0],
                        [0, 0, 0, 0]])
  s = segmentation_scores(confusion)
  assert np.isnan(s['per_class_iou'][3]) and s['per_class_iou'][2] == 0
  assert s['miou'] == pytest.approx(np.mean([4 / 5, 3 / 6, 0]))
  assert np.isnan(s['per_class_accuracy'][2]) and np.isnan(s['per_class_accuracy'][3])
  assert s['class_accuracy'] == pytest.approx(np.mean([4 / 5, 3 / 5]))
  empty = segmentation_scores(np.zeros((2, 2), int))
  assert all(np.isnan(empty[k]) for k in ('pixel_accuracy', 'miou', 'class_accuracy'))


# ---------------------------------------------------------------------------------------------
# Evaluator
# ---------------------------------------------------------------------------------------------

LOW = 4  # Predictions are LOW x LOW; labels 2x that, constant over 2x2 blocks.


class TablePredictTask:
  """Reads the example index from pixel (0, 0, 0) and the split from (0, 0, 1); returns one-hot
  scores of `perms[split][maps[split][index]]` at LOW x LOW."""

  def __init__(self, maps, perms, num_clusters, image_shape=(2 * LOW, 2 * LOW, 3)):
    self.info = DataInfo(num_classes=num_clusters, image_shape=image_shape, num_train_examples=0)
    self._maps, self._perms, self._k = jnp.asarray(maps), jnp.asarray(perms), num_clusters

  def predict_fns(self):
    def segment(variables, images):
      del variables
      index = jnp.round(images[:, 0, 0, 0] * 255).astype(jnp.int32)
      split = jnp.round(images[:, 0, 0, 1] * 255).astype(jnp.int32)
      clusters = jnp.take_along_axis(self._perms[split], self._maps[split, index].reshape(
          len(index), -1), axis=1).reshape(len(index), LOW, LOW)
      return jax.nn.one_hot(clusters, self._k) * 3.0 - 1.0  # Logit-like, not probabilities.
    return {'segment': segment}


def make_split(rng, n, num_classes, split_id, ignore=255, noise=0.0):
  """(images, labels, low-res maps that the predictions are made from)."""
  maps = rng.integers(0, num_classes, (n, LOW, LOW))
  labels = np.repeat(np.repeat(maps, 2, axis=1), 2, axis=2)
  flip = rng.random(labels.shape) < noise  # Label noise: predictions disagree there.
  labels = np.where(flip, rng.integers(0, num_classes, labels.shape), labels)
  labels[rng.random(labels.shape) < 0.2] = ignore
  images = np.zeros((n, 2 * LOW, 2 * LOW, 3), np.uint8)
  images[:, 0, 0, 0], images[:, 0, 0, 1] = np.arange(n), split_id
  return images, labels.astype(np.int32), maps


def build(tmp_path, num_devices, task, dataset, **options):
  config = config_lib.base_config()
  config.data.name = dataset
  config.data.data_dir = str(tmp_path)
  eval_config = ml_collections.ConfigDict(dict(type='segmentation', split='test', batch_size=8,
                                               **options))
  mesh = parallel.make_mesh(config.mesh, jax.devices()[:num_devices])
  return EVALUATORS[eval_config.type](eval_config, config, task, mesh)


def write_npz(tmp_path, splits, num_classes):
  for name, (images, labels, _) in splits.items():
    np.savez(tmp_path / f'{name}.npz', images=images, labels=labels,
             class_names=np.array([f'c{i}' for i in range(num_classes)]))
  return f'npz:{tmp_path}'


def expected_confusion(labels, maps, perm, num_clusters, num_classes):
  pred = perm[np.repeat(np.repeat(maps, 2, axis=1), 2, axis=2)]
  return numpy_confusion(pred, labels, num_clusters, num_classes)


@pytest.mark.parametrize('num_devices', [1, 8])
def test_evaluator_scores_permuted_perfect_predictions_as_one(tmp_path, num_devices):
  rng = np.random.default_rng(4)
  test = make_split(rng, 21, 3, split_id=0)  # 21: not a multiple of the batch (padding).
  dataset = write_npz(tmp_path, {'test': test}, 3)
  perm = np.array([2, 0, 1])
  task = TablePredictTask(test[2][None], perm[None], 3)
  evaluator = build(tmp_path, num_devices, task, dataset, ignore_index=255)
  assert SegmentationEvaluator is type(evaluator)
  results = dict(evaluator.run({}))
  assert results == {'pixel_accuracy': 1.0, 'miou': 1.0, 'class_accuracy': 1.0}
  np.testing.assert_array_equal(evaluator.last_confusion,
                                expected_confusion(test[1], test[2], perm, 3, 3))
  np.testing.assert_array_equal(evaluator.last_mapping[perm], np.arange(3))
  # Supervised scoring of the same predictions: no matching, the permutation is wrong.
  supervised = dict(build(tmp_path, num_devices, task, dataset, ignore_index=255,
                          matching='none').run({}))
  assert supervised['pixel_accuracy'] == 0.0


def test_evaluator_overclustering_noise_and_host_flushes_match_numpy(tmp_path, monkeypatch):
  rng = np.random.default_rng(5)
  test = make_split(rng, 29, 4, split_id=0, noise=0.3)  # 4 batches of 8.
  dataset = write_npz(tmp_path, {'test': test}, 4)
  perm = np.array([5, 1, 0, 3])  # 6 clusters, 2 and 4 never predicted.
  task = TablePredictTask(test[2][None], perm[None], 6)
  confusion = expected_confusion(test[1], test[2], perm, 6, 4)
  expected = segmentation_scores(confusion, hungarian_match(confusion))
  assert 0.3 < expected['pixel_accuracy'] < 0.95
  for limit in (seg_eval.MAX_DEVICE_COUNT, 2 * 8 * 64):  # The second fetches every 2 batches.
    monkeypatch.setattr(seg_eval, 'MAX_DEVICE_COUNT', limit)
    evaluator = build(tmp_path, 8, task, dataset, ignore_index=255, num_clusters=6,
                      per_class=True)
    results = dict(evaluator.run({}))
    np.testing.assert_array_equal(evaluator.last_confusion, confusion)
    for name in ('pixel_accuracy', 'miou', 'class_accuracy'):
      assert results[name] == pytest.approx(expected[name], abs=1e-12)
    assert results['iou/c0'] == pytest.approx(expected['per_class_iou'][0])


def test_mapping_split_fits_the_matching_on_another_split(tmp_path):
  rng = np.random.default_rng(6)
  train, test = make_split(rng, 10, 3, split_id=0), make_split(rng, 10, 3, split_id=1)
  dataset = write_npz(tmp_path, {'train': train, 'test': test}, 3)
  perms = np.array([[1, 2, 0], [1, 0, 2]])  # The clusters mean different classes per split.
  task = TablePredictTask(np.stack([train[2], test[2]]), perms, 3)
  transductive = dict(build(tmp_path, 1, task, dataset, ignore_index=255).run({}))
  assert transductive['pixel_accuracy'] == 1.0
  results = dict(build(tmp_path, 1, task, dataset, ignore_index=255,
                       mapping_split='train').run({}))
  fit = expected_confusion(train[1], train[2], perms[0], 3, 3)
  scored = expected_confusion(test[1], test[2], perms[1], 3, 3)
  expected = segmentation_scores(scored, hungarian_match(fit))
  assert results['pixel_accuracy'] == pytest.approx(expected['pixel_accuracy'])
  assert results['miou'] == pytest.approx(expected['miou'])
  assert results['pixel_accuracy'] < 0.6


def test_evaluator_takes_the_ignore_index_from_a_camvid_layout_dataset(tmp_path, monkeypatch):
  monkeypatch.setenv('JAXCV_CACHE_DIR', 'off')
  rng = np.random.default_rng(7)
  images, labels, maps = make_split(rng, 5, 11, split_id=0, ignore=11)  # CamVid: 11 = void.
  for sub in ('images', 'labels'):
    (tmp_path / 'camvid' / 'test' / sub).mkdir(parents=True)
  for i in range(5):
    Image.fromarray(images[i]).save(tmp_path / 'camvid' / 'test' / 'images' / f'{i}.png')
    Image.fromarray(labels[i].astype(np.uint8)).save(
        tmp_path / 'camvid' / 'test' / 'labels' / f'{i}.png')
  perm = np.arange(11)
  task = TablePredictTask(maps[None], perm[None], 11)
  evaluator = build(tmp_path, 1, task, 'camvid', matching='none')
  assert evaluator.ignore_index == 11 and evaluator.num_classes == 11
  results = dict(evaluator.run({}))
  assert results['pixel_accuracy'] == 1.0
  assert evaluator.last_confusion.sum() == np.sum(labels != 11)
  with pytest.raises(ConfigError, match='declares 11'):
    build(tmp_path, 1, task, 'camvid', ignore_index=255)


def test_evaluator_config_errors(tmp_path):
  rng = np.random.default_rng(8)
  test = make_split(rng, 4, 3, split_id=0)
  dataset = write_npz(tmp_path, {'test': test}, 3)
  task = TablePredictTask(test[2][None], np.arange(3)[None], 3)
  with pytest.raises(ConfigError, match='outside 0..2'):
    build(tmp_path, 1, task, dataset)  # 255 present but no ignore index.
  with pytest.raises(ConfigError, match='matching'):
    build(tmp_path, 1, task, dataset, ignore_index=255, matching='greedy')
  with pytest.raises(ConfigError, match='no predict function'):
    build(tmp_path, 1, task, dataset, ignore_index=255, predict='logits')
  with pytest.raises(ConfigError, match='must equal num_classes'):
    build(tmp_path, 1, task, dataset, ignore_index=255, matching='none', num_clusters=4)
  with pytest.raises(ConfigError, match='is a class id'):
    build(tmp_path, 1, task, dataset, ignore_index=1)
  with pytest.raises(ConfigError, match=r'scores \[N, h, w, 5\]'):
    list(build(tmp_path, 1, task, dataset, ignore_index=255, num_clusters=5).run({}))
