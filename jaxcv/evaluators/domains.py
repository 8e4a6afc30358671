"""Classification accuracy per domain, on a split with domain ids (DomainBed's env accuracies).

Yields `acc/<domain name>` for every domain present in the split, `acc/mean` (their unweighted
mean: DomainBed's training-domain validation accuracy when the split is the source envs' `out`
parts), and over all examples pooled `accuracy` and `loss`. Config keys as the classification
evaluator: split, dataset (default: config.data.name), batch_size, max_examples, predict, tta.
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
from jaxcv.evaluators.classification import ClassificationEvaluator, with_tta
from jaxcv.losses import cross_entropy


@register('domains')
class DomainsEvaluator(ClassificationEvaluator):
  """See the module docstring; batching and summing are the classification evaluator's."""

  def __init__(self, eval_config, config, task, mesh):  # pylint: disable=super-init-not-called
    dataset_name = eval_config.get('dataset') or config.data.name
    where = f'{dataset_name}:{eval_config.split}'
    data = load_dataset(dataset_name, eval_config.split, config.data.data_dir,
                        config.data.image_size)
    if data.domains is None or not data.domain_names:
      raise ConfigError(f"the 'domains' evaluator needs domain ids; {where} has none (use e.g. "
                        "pacs or 'domainbed(test=...):NAME')")
    if eval_config.get('max_examples') and eval_config.max_examples < len(data):
      data = data.subset(np.linspace(0, len(data) - 1, eval_config.max_examples).astype(int))
    if not len(data):
      raise ConfigError(f'evaluation data {where} is empty')
    if data.image_shape != tuple(task.info.image_shape):
      raise ConfigError(f'evaluation data {where} has images of shape {data.image_shape}, the '
                        f'model was built for {task.info.image_shape}')
    present, counts = np.unique(data.domains, return_counts=True)
    self.domain_names = tuple(str(data.domain_names[d]) for d in present)
    self._counts = counts

    # What ClassificationEvaluator.batch / mean_over_examples read.
    divisor = parallel.batch_divisor(mesh)
    self.batch_size = math.ceil(eval_config.get('batch_size', 1000) / divisor) * divisor
    self.num_examples = len(data)
    self.num_batches = math.ceil(len(data) / self.batch_size)
    pad = self.num_batches * self.batch_size - len(data)
    self._arrays = jax.device_put({
        'image': np.pad(data.images, ((0, pad), (0, 0), (0, 0), (0, 0))),
        'label': np.pad(np.asarray(data.labels, np.int32), (0, pad)),
        'mask': np.pad(np.ones(len(data), np.float32), (0, pad)),
        'domain': np.pad(np.asarray(data.domains, np.int32), (0, pad), constant_values=-1),
    }, parallel.replicated(mesh))
    self._batch_sharding = parallel.batch_sharding(mesh)
    predict = with_tta(task.predict_fns()[eval_config.get('predict', 'logits')],
                       eval_config.get('tta', 'none'))

    def batch_sums(variables, arrays, index):
      batch = self.batch(arrays, index)
      logits = predict(variables, augment.to_float(batch['image'])).astype(jnp.float32)
      correct = (jnp.argmax(logits, -1) == batch['label']) * batch['mask']
      sums = {f'correct/{i}': jnp.sum(correct * (batch['domain'] == d))
              for i, d in enumerate(present)}
      sums['accuracy'] = jnp.sum(correct)
      sums['loss'] = jnp.sum(cross_entropy(logits, batch['label']) * batch['mask'])
      return sums
    self._batch_sums = jax.jit(batch_sums)

  def run(self, variables):
    means = self.mean_over_examples(self._batch_sums, variables)  # Sums / num_examples.
    accs = [float(means[f'correct/{i}'] * self.num_examples / count)
            for i, count in enumerate(self._counts)]
    for name, acc in zip(self.domain_names, accs):
      yield f'acc/{name}', acc
    yield 'acc/mean', float(np.mean(accs))
    yield 'accuracy', means['accuracy']
    yield 'loss', means['loss']
