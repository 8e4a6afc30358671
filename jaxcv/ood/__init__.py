"""Out-of-distribution (OOD) detection: the foundation the BROAD and CADet reproductions share
(spec: ../shared/papers/00-ood-conventions.md; guide: docs/ood.md).

Sign rule: every detector returns *ID-ness*, higher = more in-distribution (OpenOOD's `conf`).
Only the metrics negate it, at their boundary (OOD is the positive class there).

- `featureset.FeatureSet`: logits, penultimate features, labels, the head (W, b) and optional
  per-layer pooled features of one split, from one cached pass (`features.py`).
- `detectors`: the `Detector` protocol (`requires`, `fit`, `score`), the registry `DETECTORS`
  and `build_detector('energy(temperature=1)')`; MSP, MaxLogit, Energy, Entropy, DOCTOR, KLM,
  MDS, RMDS, ViM, KNN, GradNorm, ReAct, DICE, ASH, SCALE and ODIN (which scores images).
- `metrics.ood_metrics`: AUROC, FPR@95TPR, AUPR-In, AUPR-Out in percent, as OpenOOD.
- `evaluate.evaluate` / `python -m jaxcv.ood.evaluate`: one call from a run to the tables.
"""

from jaxcv.ood.detectors import DETECTORS, Detector, build_detector, build_detectors
from jaxcv.ood.featureset import FeatureSet, Head
from jaxcv.ood.metrics import accuracy, ood_metrics

__all__ = ['DETECTORS', 'Detector', 'FeatureSet', 'Head', 'accuracy', 'build_detector',
           'build_detectors', 'ood_metrics']
