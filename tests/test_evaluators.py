"""Evaluator metric math against a fake model with fixed logits (checked exactly)."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from jaxcv import config as config_lib
from jaxcv import parallel
from jaxcv.evaluators.classification import ClassificationEvaluator
from jaxcv.tasks import DataInfo

NUM = 21  # Not a multiple of the batch: exercises the padding mask.


class FixedLogitsTask:
  """Reads the example index from the first pixel and returns a fixed row of logits."""

  def __init__(self, table):
    self.info = DataInfo(num_classes=table.shape[1], image_shape=(2, 2, 1), num_train_examples=0)
    self._table = jnp.asarray(table)

  def predict_fns(self):
    def logits(variables, images):
      del variables
      return self._table[jnp.round(images[:, 0, 0, 0] * 255).astype(jnp.int32)]
    return {'logits': logits}


@pytest.mark.parametrize('num_devices', [1, 8])
def test_accuracy_top5_and_loss_are_exact(tmp_path, num_devices):
  rng = np.random.default_rng(0)
  table = rng.normal(size=(NUM, 7)).astype(np.float32)
  labels = rng.integers(0, 7, NUM)
  images = np.broadcast_to(np.arange(NUM, dtype=np.uint8)[:, None, None, None], (NUM, 2, 2, 1))
  np.savez(tmp_path / 'd.npz', images=images, labels=labels)

  config = config_lib.base_config()
  config.data.name = f'npz:{tmp_path / "d.npz"}'
  eval_config = ml_collections.ConfigDict(dict(type='classification', split='all', batch_size=8))
  mesh = parallel.make_mesh(config.mesh, jax.devices()[:num_devices])
  evaluator = ClassificationEvaluator(eval_config, config, FixedLogitsTask(table), mesh)
  results = dict(evaluator.run(variables={}))

  log_probs = table - np.log(np.exp(table).sum(1, keepdims=True))
  top5 = np.argsort(-table, axis=1)[:, :5]
  assert results['accuracy'] == pytest.approx(np.mean(table.argmax(1) == labels), abs=1e-7)
  assert results['top5_accuracy'] == pytest.approx(
      np.mean([l in t for l, t in zip(labels, top5)]), abs=1e-7)
  assert results['loss'] == pytest.approx(-log_probs[np.arange(NUM), labels].mean(), rel=1e-5)
