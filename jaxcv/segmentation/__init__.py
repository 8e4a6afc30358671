"""Semantic segmentation: the evaluation foundation (guide: docs/segmentation.md).

- `metrics.confusion_matrix`: [num_pred, num_classes] pixel counts in jnp (rows = predictions).
- `metrics.hungarian_match`: cluster -> class over the whole set (scipy), overclustering allowed.
- `metrics.segmentation_scores`: pixel accuracy, mIoU, class-average accuracy, per-class values.
The `'segmentation'` evaluator (jaxcv/evaluators/segmentation.py) runs them over a split.
"""

from jaxcv.segmentation.metrics import (confusion_matrix, fold_confusion, hungarian_match,
                                        segmentation_scores)

__all__ = ['confusion_matrix', 'fold_confusion', 'hungarian_match', 'segmentation_scores']
