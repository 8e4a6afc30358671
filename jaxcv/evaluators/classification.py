"""Top-1/top-5 accuracy and cross-entropy of a classifier on a labelled split.

Optional test-time augmentation (`tta`), averaging logits as airbench94 does (arXiv 2404.00498):
  'flip': mean of the image and its mirror;
  'flip_translate': 0.5 * flip(x) + 0.25 * (flip(shift(x, -1, -1)) + flip(shift(x, +1, +1))),
    shifts reflect-padded by one pixel.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from jaxcv import parallel
from jaxcv.data import augment
from jaxcv.data.registry import load_dataset
from jaxcv.errors import ConfigError
from jaxcv.evaluators.base import register
from jaxcv.losses import cross_entropy


TTA_MODES = ('none', 'flip', 'flip_translate')


def with_tta(predict, mode: str):
  """predict(variables, images) averaged over test-time augmentations of the images."""
  if mode not in TTA_MODES:
    raise ConfigError(f'tta must be one of {TTA_MODES}, got {mode!r}')
  if mode == 'none':
    return predict

  def mirror(variables, images):
    both = predict(variables, jnp.concatenate([images, images[:, :, ::-1, :]]))
    return jnp.mean(jnp.stack(jnp.split(both.astype(jnp.float32), 2)), axis=0)
  if mode == 'flip':
    return mirror

  def mirror_translate(variables, images):
    h, w = images.shape[1:3]
    padded = jnp.pad(images, ((0, 0), (1, 1), (1, 1), (0, 0)), mode='reflect')
    shifted = jnp.concatenate([padded[:, :h, :w], padded[:, 2:h + 2, 2:w + 2]])
    return (0.5 * mirror(variables, images)
            + 0.5 * jnp.mean(jnp.stack(jnp.split(mirror(variables, shifted), 2)), axis=0))
  return mirror_translate


@register('classification')
class ClassificationEvaluator:
  """Config keys: split, dataset (default: config.data.name), batch_size, max_examples, predict,
  tta ('none' | 'flip' | 'flip_translate')."""

  def __init__(self, eval_config, config, task, mesh):
    dataset_name = eval_config.get('dataset') or config.data.name
    data = load_dataset(dataset_name, eval_config.split, config.data.data_dir,
                        config.data.image_size)
    if eval_config.get('max_examples') and eval_config.max_examples < len(data):
      # Evenly spaced, so that a dataset stored class by class keeps every class.
      data = data.subset(np.linspace(0, len(data) - 1, eval_config.max_examples).astype(int))
    if data.image_shape != tuple(task.info.image_shape):
      raise ConfigError(f'evaluation data {dataset_name}:{eval_config.split} has images of shape '
                        f'{data.image_shape}, the model was built for {task.info.image_shape}')
    divisor = parallel.batch_divisor(mesh)
    self.batch_size = math.ceil(eval_config.get('batch_size', 1000) / divisor) * divisor
    self.num_examples = len(data)
    self.num_batches = math.ceil(len(data) / self.batch_size)
    # Pad to whole batches; the mask keeps padding out of every sum.
    pad = self.num_batches * self.batch_size - len(data)
    replicated = parallel.replicated(mesh)
    self._arrays = jax.device_put({
        'image': np.pad(data.images, ((0, pad), (0, 0), (0, 0), (0, 0))),
        'label': np.pad(np.asarray(data.labels, np.int32), (0, pad)),
        'mask': np.pad(np.ones(len(data), np.float32), (0, pad)),
    }, replicated)
    predict = with_tta(task.predict_fns()[eval_config.get('predict', 'logits')],
                       eval_config.get('tta', 'none'))
    self._batch_sharding = parallel.batch_sharding(mesh)

    def batch_sums(variables, arrays, index):
      batch = self.batch(arrays, index)
      logits = predict(variables, augment.to_float(batch['image'])).astype(jnp.float32)
      labels, mask = batch['label'], batch['mask']
      top5 = jax.lax.top_k(logits, min(5, logits.shape[-1]))[1]
      return {
          'accuracy': jnp.sum((jnp.argmax(logits, -1) == labels) * mask),
          'top5_accuracy': jnp.sum(jnp.any(top5 == labels[:, None], -1) * mask),
          'loss': jnp.sum(cross_entropy(logits, labels) * mask),
      }
    self._batch_sums = jax.jit(batch_sums)

  def batch(self, arrays, index):
    """Batch `index` of the padded device arrays, sharded over the mesh (inside jit)."""
    batch = jax.tree.map(
        lambda a: jax.lax.dynamic_slice_in_dim(a, index * self.batch_size, self.batch_size),
        arrays)
    return jax.lax.with_sharding_constraint(batch, self._batch_sharding)

  def mean_over_examples(self, batch_sums, variables) -> dict[str, float]:
    """Per-example means of jitted `batch_sums(variables, arrays, index)` over every batch,
    summed on the device and fetched once."""
    totals = None
    for index in range(self.num_batches):
      sums = batch_sums(variables, self._arrays, index)
      totals = sums if totals is None else jax.tree.map(jnp.add, totals, sums)
    return {name: float(total) / self.num_examples
            for name, total in jax.device_get(totals).items()}

  def run(self, variables):
    yield from self.mean_over_examples(self._batch_sums, variables).items()
