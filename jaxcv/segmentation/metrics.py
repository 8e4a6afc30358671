"""Semantic-segmentation scores from one confusion matrix, supervised or Hungarian-matched.

Orientation: `confusion[p, c]` counts labelled pixels predicted as p (a class, or a cluster for
unsupervised methods) whose true class is c; rows = predictions, columns = true classes. This is
STEGO's `UnsupervisedMetrics.stats` (mhamilton723/STEGO, src/utils.py).

- `confusion_matrix`: jnp, jit-friendly; sum it over batches (it is a count).
- `hungarian_match`: on the host (scipy); cluster -> class over the whole evaluated set.
- `segmentation_scores`: pixel accuracy, mIoU, class-average accuracy, per-class IoU / accuracy.
Scores are fractions in [0, 1] (STEGO prints them x100).
"""

from __future__ import annotations

from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np
from scipy.optimize import linear_sum_assignment

UNMATCHED = ('majority', 'none')


def confusion_matrix(pred: jax.Array, label: jax.Array, num_pred: int, num_classes: int,
                     ignore_index: Optional[int] = None) -> jax.Array:
  """int32 [num_pred, num_classes] counts of (predicted, true) pixel pairs.

  Pixels whose label is `ignore_index` or outside [0, num_classes), or whose prediction is outside
  [0, num_pred) (STEGO drops those too), count nowhere: they go to one extra bin that is cut off,
  so they cannot land in bin (0, 0). Counts are int32: sum at most 2**31 - 1 pixels on the device.
  """
  pred, label = jnp.ravel(pred).astype(jnp.int32), jnp.ravel(label).astype(jnp.int32)
  if pred.shape != label.shape:
    raise ValueError(f'{pred.size} predicted pixels but {label.size} labels')
  valid = (label >= 0) & (label < num_classes) & (pred >= 0) & (pred < num_pred)
  if ignore_index is not None:
    valid &= label != ignore_index
  size = num_pred * num_classes
  index = jnp.where(valid, pred * num_classes + label, size)
  return jnp.bincount(index, length=size + 1)[:size].reshape(num_pred, num_classes)


def hungarian_match(confusion, unmatched: str = 'majority') -> np.ndarray:
  """mapping[p] = the class that prediction (cluster) p is scored as; int64 [num_pred].

  The one-to-one assignment maximises the matched pixel count (`linear_sum_assignment(...,
  maximize=True)`), as IIC, PiCIE and STEGO do. With more clusters than classes (overclustering,
  STEGO's `extra_clusters`), the clusters the assignment leaves out are handled by `unmatched`:
    'majority': each goes to the class it overlaps most (many-to-one, as IIC's overclustering
      evaluation); an empty cluster goes to class 0, which changes nothing.
    'none': mapped to -1, so their pixels count as errors (what STEGO's extra-cluster histogram
      does: one "other" row that matches no class).
  With fewer clusters than classes, some classes get no cluster and score IoU 0 where present.
  """
  if unmatched not in UNMATCHED:
    raise ValueError(f'unmatched must be one of {UNMATCHED}, got {unmatched!r}')
  confusion = np.asarray(confusion)
  rows, cols = linear_sum_assignment(confusion, maximize=True)
  if unmatched == 'majority':
    mapping = np.argmax(confusion, axis=1).astype(np.int64)
  else:
    mapping = np.full(confusion.shape[0], -1, np.int64)
  mapping[rows] = cols
  return mapping


def fold_confusion(confusion, mapping=None) -> np.ndarray:
  """int64 [num_classes, num_classes]: the rows of `confusion` summed into the class each is
  mapped to (rows mapped to -1 are dropped). mapping=None: identity (square confusion)."""
  confusion = np.asarray(confusion, np.int64)
  num_pred, num_classes = confusion.shape
  if mapping is None:
    if num_pred != num_classes:
      raise ValueError(f'a {num_pred}x{num_classes} confusion needs a mapping to classes')
    return confusion
  mapping = np.asarray(mapping, np.int64)
  if mapping.shape != (num_pred,) or mapping.max(initial=-1) >= num_classes:
    raise ValueError(f'mapping must be [{num_pred}] ints in [-1, {num_classes}), got {mapping}')
  folded = np.zeros((num_classes, num_classes), np.int64)
  keep = mapping >= 0
  np.add.at(folded, mapping[keep], confusion[keep])
  return folded


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
  """num / den, NaN where den == 0 (without a warning)."""
  out = np.full(np.shape(num), np.nan)
  np.divide(num, den, out=out, where=den > 0)
  return out


def _nanmean(x: np.ndarray) -> float:
  finite = x[~np.isnan(x)]
  return float(finite.mean()) if finite.size else float('nan')


def segmentation_scores(confusion, mapping=None) -> dict:
  """Scores of a [num_pred, num_classes] confusion matrix whose predictions map to classes by
  `mapping` (from `hungarian_match`; None = identity, for supervised class predictions).

  Returns a dict:
    pixel_accuracy: correct / all labelled pixels (pixels in clusters mapped to -1 count as
      wrong);
    miou: mean over classes of IoU = TP / (TP + FP + FN), skipping classes with no pixel in the
      labels nor the predictions (NaN IoU), as STEGO does; a class present in the labels but never
      predicted counts as 0;
    class_accuracy: mean over classes present in the labels of recall TP / (TP + FN);
    per_class_iou, per_class_accuracy: float64 [num_classes], NaN where undefined.
  Everything is NaN when no pixel is labelled.
  """
  confusion = np.asarray(confusion, np.int64)
  folded = fold_confusion(confusion, mapping)
  tp = np.diag(folded)
  predicted = folded.sum(axis=1)  # Pixels scored as each class.
  actual = confusion.sum(axis=0)  # Pixels of each true class, including unmapped clusters'.
  iou = _ratio(tp, predicted + actual - tp)
  recall = _ratio(tp, actual)
  return {
      'pixel_accuracy': float(_ratio(tp.sum(), confusion.sum())),
      'miou': _nanmean(iou),
      'class_accuracy': _nanmean(recall),
      'per_class_iou': iou,
      'per_class_accuracy': recall,
  }
