"""Adversarial attacks in pure JAX: FGSM, PGD (L-inf/L2), APGD-CE/DLR/T, CW-L2, an ensemble.

Every attack takes `predict_fn(images) -> logits` (float images in [0, 1]; build one from a linen
model with `model_predict_fn`, BatchNorm in eval mode by default) and returns adversarial images.
All loops are `lax.fori_loop`s, so the attacks jit, batch and run inside a train step.
"""

from jaxcv.attacks.apgd import apgd, apgd_targeted, checkpoint_schedule
from jaxcv.attacks.common import (LOSSES, cross_entropy, dlr, margin, model_predict_fn,
                                  per_example_norm, project, targeted_dlr)
from jaxcv.attacks.cw import cw_l2, robust_within
from jaxcv.attacks.ensemble import ATTACKS, AttackSpec, parse_attack, robust_accuracy_masks
from jaxcv.attacks.pgd import fgsm, pgd

__all__ = [
    'ATTACKS', 'AttackSpec', 'LOSSES', 'apgd', 'apgd_targeted', 'checkpoint_schedule',
    'cross_entropy', 'cw_l2', 'dlr', 'fgsm', 'margin', 'model_predict_fn', 'parse_attack',
    'per_example_norm', 'pgd', 'project', 'robust_accuracy_masks', 'robust_within',
    'targeted_dlr',
]
