"""MIRO (Cha et al., ECCV 2022, "Domain Generalization by Mutual-Information Regularization with
Pre-trained Models"; reference code kakaobrain/miro, domainbed/algorithms/miro.py): the optional
regulariser of ERM++ (docs/erm_pp.md).

A frozen copy of the initial (pretrained) network gives features `pre_f` at its intermediate
stage outputs; per stage a mean encoder (the identity) and a variance encoder (a learned
per-channel bias b, variance softplus(b) + eps, b set so the variance starts at 0.1) give a
Gaussian variational bound on the mutual information between the trained features f and pre_f.
The loss adds

    weight * sum over stages of mean((f - pre_f)^2 / var + log var) / 2

to the task loss (weight 0.1, `ld` in the reference), the encoders training at 10x the lr.

Stages are the model's sown `intermediates` (the reference hooks timm's stem and four blocks;
jaxcv's models sow their stage outputs, e.g. stage1..stage4 of DomainBed's MNIST CNN). Features
are channels-last here, so the per-channel bias is a vector over the last axis (the reference's
(1, C, 1, 1) for NCHW).
"""

from __future__ import annotations

import math
from typing import Any, Mapping

import jax
import jax.numpy as jnp

# Top-level params entry holding the variance encoders (the model ignores it; the optimizer
# gives it its lr multiplier through config.optimizer.param_groups).
PARAMS_KEY = 'miro'
PARAMS_PATTERN = r'^miro/'
VARIANCE_INIT = 0.1  # The reference's VarianceEncoder(init=0.1, eps=1e-5).
EPS = 1e-5
WEIGHT = 0.1  # `ld` in the reference's config.yaml.
LR_MULT = 10.0  # `lr_mult` in the reference's config.yaml.


def initial_bias(init: float = VARIANCE_INIT, eps: float = EPS) -> float:
  """The inverse softplus of init - eps: softplus(b) + eps == init at the start."""
  return math.log(math.expm1(init - eps))


def stage_features(intermediates: Mapping[str, Any]) -> dict[str, jax.Array]:
  """{stage name: feature} from a model's sown `intermediates` collection (sow keeps a tuple)."""
  return {name: value[-1] if isinstance(value, (tuple, list)) else value
          for name, value in intermediates.items()}


def init_variance_params(features: Mapping[str, jax.Array]) -> dict:
  """One channel-wise bias per stage, for features shaped [..., C]."""
  return {name: {'b': jnp.full((f.shape[-1],), initial_bias(), jnp.float32)}
          for name, f in features.items()}


def variance(b: jax.Array) -> jax.Array:
  return jax.nn.softplus(b) + EPS


def regulariser(features: Mapping[str, jax.Array], pre_features: Mapping[str, jax.Array],
                variance_params: Mapping[str, Any]) -> jax.Array:
  """sum over stages of mean((f - pre_f)^2 / var + log var) / 2 (mean encoder = identity).

  The mean runs over the broadcast [N, ..., C] array, as the reference's `vlb.mean()`.
  `pre_features` come from the frozen network: no gradient flows into them.
  """
  if set(features) != set(pre_features) or set(features) != set(variance_params):
    raise ValueError(f'MIRO stages differ: features {sorted(features)}, frozen '
                     f'{sorted(pre_features)}, encoders {sorted(variance_params)}')
  total = jnp.zeros((), jnp.float32)
  for name in sorted(features):
    f = features[name].astype(jnp.float32)
    pre = jax.lax.stop_gradient(pre_features[name]).astype(jnp.float32)
    var = variance(variance_params[name]['b'])
    vlb = jnp.square(f - pre) / var + jnp.log(var)
    total = total + jnp.mean(vlb) / 2.0
  return total
