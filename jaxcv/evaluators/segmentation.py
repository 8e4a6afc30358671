"""Pixel accuracy, mIoU and class-average accuracy of per-pixel predictions on a labelled split.

The task's predict function (option `predict`, default 'segment') maps (variables, float images
in [0, 1]) to scores [N, h, w, K]: class logits, or cluster scores for unsupervised methods.
Scores smaller (or larger) than the label maps are resized bilinearly to the label size, like
`F.interpolate(mode='bilinear', align_corners=False)` in PiCIE / STEGO, and the argmax is the
prediction. One confusion matrix over the whole split is summed on the device, then, with
`matching='hungarian'`, clusters are matched to classes once over the whole set (never per batch),
as STEGO's cluster probe does (jaxcv/segmentation/metrics.py).

Config keys: split, dataset (default: config.data.name), batch_size (default 32), max_examples,
predict, matching ('hungarian' | 'none'), num_clusters (K; default num_classes), unmatched
('majority' | 'none': extra clusters under overclustering), mapping_split (fit the Hungarian
mapping on this split of the same dataset instead of the evaluated one, as IIC+), num_classes
(default: the dataset's class count), ignore_index (used when the dataset declares none),
per_class (also yield iou/<class name>), cluster_usage (also yield clusters_used and
cluster_entropy_norm of the predictions over the scored pixels: jaxcv/segmentation/clusters.py),
min_cluster_share (a cluster is in use above this share of the pixels; default 0.001),
figure_examples (write examples.png with that many evenly spaced images, ground truth and
matched predictions coloured by class, into the evaluator's artefact folder; default 0).
Labels outside [0, num_classes) that are negative or the ignore index are not scored; any other
out-of-range label is an error.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxcv import parallel
from jaxcv.data import augment
from jaxcv.data.dataset import ArrayDataset
from jaxcv.data.registry import load_dataset
from jaxcv.errors import ConfigError
from jaxcv.evaluators.base import predict_function, register
from jaxcv.segmentation import clusters, metrics

log = logging.getLogger(__name__)

MATCHINGS = ('hungarian', 'none')
# Device counts are int32: fetch the running sum before it could hold more pixels than this.
MAX_DEVICE_COUNT = 2**31 - 1


@dataclasses.dataclass
class _Split:
  """One split on the device, padded to whole batches (padding labels are -1: not scored)."""
  arrays: dict[str, Any]
  num_examples: int
  num_batches: int
  flush_every: int  # Batches summed on the device between fetches to the host's int64 total.


def _ignore_index(data: ArrayDataset, eval_config):
  declared, option = data.ignore_index, eval_config.get('ignore_index')
  if declared is not None and option is not None and int(option) != int(declared):
    raise ConfigError(f'ignore_index={option} but the dataset declares {declared}')
  return declared if declared is not None else option


def _label_dtype(num_classes: int):
  for dtype in (np.int8, np.int16):
    if num_classes <= np.iinfo(dtype).max:
      return dtype
  return np.int32


@register('segmentation')
class SegmentationEvaluator:
  """See the module docstring; yields pixel_accuracy, miou, class_accuracy (fractions)."""

  def __init__(self, eval_config, config, task, mesh, artefacts=None):
    self.artefacts = artefacts
    self.matching = eval_config.get('matching', 'hungarian')
    if self.matching not in MATCHINGS:
      raise ConfigError(f'segmentation matching must be one of {MATCHINGS}, got '
                        f'{self.matching!r}')
    self.unmatched = eval_config.get('unmatched', 'majority')
    if self.unmatched not in metrics.UNMATCHED:
      raise ConfigError(f'segmentation unmatched must be one of {metrics.UNMATCHED}, got '
                        f'{self.unmatched!r}')
    self._dataset = eval_config.get('dataset') or config.data.name
    data = self._load(eval_config, config, task, eval_config.split)
    self.num_classes = int(eval_config.get('num_classes') or data.num_classes)
    self.class_names = (tuple(data.class_names) if len(data.class_names) == self.num_classes
                        else tuple(str(i) for i in range(self.num_classes)))
    self.ignore_index = _ignore_index(data, eval_config)
    if self.ignore_index is not None and 0 <= self.ignore_index < self.num_classes:
      raise ConfigError(f'ignore_index={self.ignore_index} is a class id (classes are 0..'
                        f'{self.num_classes - 1}); remap the labels or set num_classes')
    self.num_clusters = int(eval_config.get('num_clusters') or self.num_classes)
    if self.matching == 'none' and self.num_clusters != self.num_classes:
      raise ConfigError(f"matching='none' scores class predictions: num_clusters="
                        f'{self.num_clusters} must equal num_classes={self.num_classes}')
    self.per_class = bool(eval_config.get('per_class', False))
    self.cluster_usage = bool(eval_config.get('cluster_usage', False))
    self.min_cluster_share = float(eval_config.get('min_cluster_share', 0.001))
    figure_examples = min(int(eval_config.get('figure_examples', 0)), len(data))
    # Evenly spaced over the split (neighbouring video frames look alike).
    self._figure_data = (data.subset(np.linspace(0, len(data) - 1, figure_examples).astype(int))
                         if figure_examples else None)

    divisor = parallel.batch_divisor(mesh)
    self.batch_size = math.ceil(eval_config.get('batch_size', 32) / divisor) * divisor
    self._replicated = parallel.replicated(mesh)
    self._batch_sharding = parallel.batch_sharding(mesh)
    self._split = self._put(data, eval_config.split)
    self._mapping_split = None
    mapping_split = eval_config.get('mapping_split')
    if mapping_split:
      if self.matching != 'hungarian':
        raise ConfigError("mapping_split needs matching='hungarian'")
      self._mapping_split = self._put(
          self._load(eval_config, config, task, mapping_split), mapping_split)

    predict = predict_function(task, eval_config.get('predict', 'segment'), 'segmentation')

    def accumulate(variables, arrays, index, running):
      batch = jax.tree.map(
          lambda a: jax.lax.dynamic_slice_in_dim(a, index * self.batch_size, self.batch_size),
          arrays)
      batch = jax.lax.with_sharding_constraint(batch, self._batch_sharding)
      scores = predict(variables, augment.to_float(batch['image']))
      pred = self._to_prediction(scores, batch['label'].shape)
      return running + metrics.confusion_matrix(pred, batch['label'], self.num_clusters,
                                                self.num_classes)
    self._accumulate = jax.jit(accumulate)
    self._predict = jax.jit(lambda variables, images: self._to_prediction(
        predict(variables, augment.to_float(images)), images.shape[:3]))
    log.info('segmentation: %s:%s, %d examples, %d classes, %d clusters, matching=%s%s, '
             'ignore_index=%s', self._dataset, eval_config.split, self._split.num_examples,
             self.num_classes, self.num_clusters, self.matching,
             f' (fit on {mapping_split})' if mapping_split else '', self.ignore_index)
    self.last_confusion = None  # [num_clusters, num_classes] int64 of the latest run.
    self.last_mapping = None  # cluster -> class of the latest run (None: identity).

  # --- data ----------------------------------------------------------------------------------
  def _load(self, eval_config, config, task, split) -> ArrayDataset:
    data = load_dataset(self._dataset, split, config.data.data_dir, config.data.image_size)
    where = f'{self._dataset}:{split}'
    if np.ndim(data.labels) != 3:
      raise ConfigError(f'segmentation evaluation needs label maps [N, H, W]; {where} has '
                        f'labels of shape {np.shape(data.labels)}')
    if eval_config.get('max_examples') and eval_config.max_examples < len(data):
      data = data.subset(np.linspace(0, len(data) - 1, eval_config.max_examples).astype(int))
    if data.image_shape != tuple(task.info.image_shape):
      raise ConfigError(f'evaluation data {where} has images of shape {data.image_shape}, the '
                        f'model was built for {tuple(task.info.image_shape)}')
    return data

  def _labels(self, labels: np.ndarray, where: str) -> np.ndarray:
    """Labels with every unscored pixel set to -1, in a small integer type."""
    labels = np.asarray(labels)
    values = np.unique(labels)
    odd = values[(values >= self.num_classes) & (values != (
        -1 if self.ignore_index is None else self.ignore_index))]
    if odd.size:
      raise ConfigError(f'{where} has labels {odd[:5].tolist()} outside 0..{self.num_classes - 1} '
                        f'and ignore_index={self.ignore_index}; set ignore_index or num_classes')
    scored = (labels >= 0) & (labels < self.num_classes)
    return np.where(scored, labels, -1).astype(_label_dtype(self.num_classes))

  def _put(self, data: ArrayDataset, split: str) -> _Split:
    num_batches = math.ceil(len(data) / self.batch_size)
    pad = num_batches * self.batch_size - len(data)
    labels = self._labels(data.labels, f'{self._dataset}:{split}')
    arrays = jax.device_put({
        'image': np.pad(data.images, ((0, pad), (0, 0), (0, 0), (0, 0))),
        'label': np.pad(labels, ((0, pad), (0, 0), (0, 0)), constant_values=-1),
    }, self._replicated)
    pixels_per_batch = self.batch_size * labels.shape[1] * labels.shape[2]
    return _Split(arrays, len(data), num_batches, max(1, MAX_DEVICE_COUNT // pixels_per_batch))

  # --- prediction ----------------------------------------------------------------------------
  def _to_prediction(self, scores, label_shape) -> jax.Array:
    """Argmax over K of scores [N, h, w, K], resized to the labels' [N, H, W] when different."""
    if scores.ndim != 4 or scores.shape[-1] != self.num_clusters:
      raise ConfigError(f'the segmentation predict function must return scores [N, h, w, '
                        f'{self.num_clusters}] (num_clusters), got shape {scores.shape}')
    scores = scores.astype(jnp.float32)
    if scores.shape[1:3] != tuple(label_shape[1:]):
      scores = jax.image.resize(scores, (*label_shape, scores.shape[-1]), 'bilinear',
                                antialias=False)
    return jnp.argmax(scores, axis=-1)

  def confusion(self, variables, split: _Split) -> np.ndarray:
    """int64 [num_clusters, num_classes] over every example of `split`."""
    total = np.zeros((self.num_clusters, self.num_classes), np.int64)
    running = None
    for index in range(split.num_batches):
      if running is None:
        running = jax.device_put(jnp.zeros_like(total, jnp.int32), self._replicated)
      running = self._accumulate(variables, split.arrays, index, running)
      if (index + 1) % split.flush_every == 0 or index + 1 == split.num_batches:
        total += np.asarray(jax.device_get(running), np.int64)
        running = None
    return total

  def run(self, variables):
    confusion = self.confusion(variables, self._split)
    mapping = None
    if self.matching == 'hungarian':
      fit_on = (confusion if self._mapping_split is None
                else self.confusion(variables, self._mapping_split))
      mapping = metrics.hungarian_match(fit_on, self.unmatched)
    self.last_confusion, self.last_mapping = confusion, mapping
    scores = metrics.segmentation_scores(confusion, mapping)
    for name in ('pixel_accuracy', 'miou', 'class_accuracy'):
      yield name, scores[name]
    if self.per_class:
      for class_name, iou in zip(self.class_names, scores['per_class_iou']):
        yield f'iou/{class_name}', float(iou)
    if self.cluster_usage:
      usage = clusters.cluster_usage(confusion.sum(axis=1), self.min_cluster_share)
      yield 'clusters_used', usage['clusters_used']
      yield 'cluster_entropy_norm', float(usage['cluster_entropy_norm'])
    if self._figure_data is not None and self.artefacts is not None and self.artefacts.enabled:
      self._write_figure(variables, mapping)

  def _write_figure(self, variables, mapping):
    """examples.png: image, ground truth, prediction (clusters coloured as their matched
    class; unmatched clusters and void pixels black)."""
    from jaxcv.evaluators.artefacts import new_figure  # pylint: disable=import-outside-toplevel
    data = self._figure_data
    pred = np.asarray(jax.device_get(self._predict(variables, jnp.asarray(data.images))))
    if mapping is not None:
      pred = np.asarray(mapping)[pred]
    labels = self._labels(data.labels, 'figure')
    palette = class_palette(self.num_classes)
    n = len(data)
    figure = new_figure(figsize=(7.5, 2.0 * n))
    for i in range(n):
      for j, (title, picture) in enumerate((('image', data.images[i]),
                                            ('ground truth', palette[labels[i]]),
                                            ('prediction', palette[pred[i]]))):
        axis = figure.add_subplot(n, 3, 3 * i + j + 1)
        axis.imshow(picture.squeeze())
        axis.set_axis_off()
        if i == 0:
          axis.set_title(title, fontsize=9)
    figure.tight_layout()
    self.artefacts.figure('examples.png', figure)


def class_palette(num_classes: int) -> np.ndarray:
  """uint8 [num_classes + 1, 3] colours indexed by class, the last (index -1) black."""
  from matplotlib import colormaps  # pylint: disable=import-outside-toplevel
  cmap = colormaps['tab20']
  colours = [cmap(i % 20)[:3] for i in range(num_classes)] + [(0.0, 0.0, 0.0)]
  return (np.asarray(colours) * 255).astype(np.uint8)
