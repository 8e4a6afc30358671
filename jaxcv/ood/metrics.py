"""OOD detection metrics, computed exactly as OpenOOD v1.5 `openood/evaluators/metrics.py`
(`auc_and_fpr_recall`) does, so jaxcv numbers are comparable with its tables.

Inputs are ID-ness scores (higher = more in-distribution, the jaxcv sign rule) of an ID set and an
OOD set. OOD is the positive class, so the ROC and AUPR-Out curves are computed on the negated
scores. All values are returned in percent (OpenOOD prints and tabulates x100):

- 'auroc': area under the ROC curve (sklearn `roc_curve` + `auc`, equal to `roc_auc_score`).
- 'fpr95': the false-positive rate (ID flagged as OOD) at the first ROC point whose
  true-positive rate (OOD flagged as OOD) reaches 95 %.
- 'aupr_in': area under the precision-recall curve with ID as positive, scored by the ID-ness.
- 'aupr_out': the same with OOD as positive, scored by the negated ID-ness.
Both AUPRs are trapezoidal areas (`precision_recall_curve` + `auc`) as in OpenOOD, not sklearn's
step-wise `average_precision_score`.
"""

from __future__ import annotations

import numpy as np
from sklearn import metrics as skm

METRICS = ('auroc', 'fpr95', 'aupr_in', 'aupr_out')
# Display names, as OpenOOD's tables label them.
METRIC_NAMES = {'auroc': 'AUROC', 'fpr95': 'FPR@95TPR', 'aupr_in': 'AUPR-In',
                'aupr_out': 'AUPR-Out'}


def _scores(values, what: str) -> np.ndarray:
  values = np.asarray(values, np.float64).reshape(-1)
  if not len(values):
    raise ValueError(f'{what} scores are empty')
  if not np.all(np.isfinite(values)):
    raise ValueError(f'{what} scores contain {np.sum(~np.isfinite(values))} non-finite values')
  return values


def ood_metrics(id_scores, ood_scores, *, tpr: float = 0.95) -> dict[str, float]:
  """AUROC, FPR@`tpr`TPR, AUPR-In and AUPR-Out (percent) from ID-ness scores of both sets."""
  id_scores, ood_scores = _scores(id_scores, 'ID'), _scores(ood_scores, 'OOD')
  conf = np.concatenate([id_scores, ood_scores])
  ood = np.concatenate([np.zeros(len(id_scores), int), np.ones(len(ood_scores), int)])
  fpr_list, tpr_list, _ = skm.roc_curve(ood, -conf)
  fpr = fpr_list[np.argmax(tpr_list >= tpr)]
  precision_in, recall_in, _ = skm.precision_recall_curve(1 - ood, conf)
  precision_out, recall_out, _ = skm.precision_recall_curve(ood, -conf)
  return {'auroc': 100 * float(skm.auc(fpr_list, tpr_list)), 'fpr95': 100 * float(fpr),
          'aupr_in': 100 * float(skm.auc(recall_in, precision_in)),
          'aupr_out': 100 * float(skm.auc(recall_out, precision_out))}


def mean_metrics(per_set: dict[str, dict[str, float]]) -> dict[str, float]:
  """The unweighted mean of each metric over OOD sets (OpenOOD's near/far 'mean' rows)."""
  return {m: float(np.mean([r[m] for r in per_set.values()])) for m in METRICS}


def accuracy(logits, labels) -> float:
  """Top-1 accuracy in percent."""
  return 100 * float(np.mean(np.argmax(np.asarray(logits), -1) == np.asarray(labels)))
