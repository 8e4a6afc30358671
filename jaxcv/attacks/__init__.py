"""Adversarial attacks in pure JAX: FGSM, PGD (L-inf/L2), APGD-CE/DLR/T, FAB-T, Square, CW-L2,
AutoAttack's standard ensemble, and named specs for the robustness evaluator.

Every attack takes `predict_fn(images) -> logits` (float images in [0, 1]; build one from a linen
model with `model_predict_fn`, BatchNorm in eval mode by default) and returns adversarial images.
All loops are `lax` loops, so the attacks jit, batch and run inside a train step.
"""

from jaxcv.attacks.apgd import (ApgdRun, apgd, apgd_run, apgd_start, apgd_targeted,
                                checkpoint_schedule, target_ranking)
from jaxcv.attacks.autoattack import autoattack, autoattack_stages
from jaxcv.attacks.common import (LOSSES, cross_entropy, dlr, margin, model_predict_fn,
                                  per_example_norm, project, targeted_dlr)
from jaxcv.attacks.cw import cw_l2, robust_within
from jaxcv.attacks.ensemble import ATTACKS, AttackSpec, parse_attack, robust_accuracy_masks
from jaxcv.attacks.fab import fab_targeted, fab_targeted_run, project_linf_hyperplane
from jaxcv.attacks.pgd import fgsm, pgd
from jaxcv.attacks.square import p_schedule, square_linf, square_sides

__all__ = [
    'ATTACKS', 'ApgdRun', 'AttackSpec', 'LOSSES', 'apgd', 'apgd_run', 'apgd_start',
    'apgd_targeted', 'autoattack', 'autoattack_stages', 'checkpoint_schedule', 'cross_entropy',
    'cw_l2', 'dlr', 'fab_targeted', 'fab_targeted_run', 'fgsm', 'margin', 'model_predict_fn',
    'p_schedule', 'parse_attack', 'per_example_norm', 'pgd', 'project',
    'project_linf_hyperplane', 'robust_accuracy_masks', 'robust_within', 'square_linf',
    'square_sides', 'target_ranking', 'targeted_dlr',
]
