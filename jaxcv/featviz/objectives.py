"""What a feature visualisation maximises: a logit, a channel, a neuron or a direction.

Spec strings:
  'logit'                    logit[target]
  'channel:LAYER'            mean over positions of channel `target` of a sown layer
  'neuron:LAYER'             channel `target` at the centre position (centre patch token for ViTs)
  'direction:LAYER'          pooled activation · target vector (targets are vectors [D])
  'cosine:LAYER'             cosine of the pooled activation with the target vector
LAYER is a name the model sows into 'intermediates' (zoo ResNets: stage1..stage4; ViTs:
block1..blockN; SmallCNN: stage1, stage2). Activations are [N, H, W, C] or tokens [N, T, C].
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, Mapping, Optional

import jax
import jax.numpy as jnp

from jaxcv.errors import ConfigError

KINDS = ('logit', 'channel', 'neuron', 'direction', 'cosine')

Forward = Callable[[jax.Array], tuple[jax.Array, Mapping[str, jax.Array]]]


def _pool(activation: jax.Array) -> jax.Array:
  """Mean over every position axis: [N, ..., C] -> [N, C]."""
  return jnp.mean(activation, axis=tuple(range(1, activation.ndim - 1)))


def _centre(activation: jax.Array) -> jax.Array:
  """The centre position's channels [N, C]: the middle pixel of a map, the middle patch token
  of a ViT (tokens = class token + a square grid), else the middle token."""
  if activation.ndim == 4:
    return activation[:, activation.shape[1] // 2, activation.shape[2] // 2]
  tokens = activation.shape[1]
  grid = math.isqrt(tokens - 1)
  index = 1 + (grid // 2) * grid + grid // 2 if grid * grid == tokens - 1 else tokens // 2
  return activation[:, index]


@dataclasses.dataclass(frozen=True)
class Objective:
  kind: str
  layer: Optional[str] = None

  @property
  def vector_targets(self) -> bool:
    return self.kind in ('direction', 'cosine')

  def __call__(self, logits: jax.Array, intermediates: Mapping[str, jax.Array],
               targets: jax.Array) -> jax.Array:
    """Per-image values [N] for per-image targets ([N] ints, or [N, D] vectors)."""
    if self.kind == 'logit':
      return jnp.take_along_axis(logits, targets[:, None], axis=-1)[:, 0]
    if self.layer not in intermediates:
      raise ConfigError(f'objective {self.kind}:{self.layer}: the model sows no layer '
                        f'{self.layer!r}; it sows {sorted(intermediates)}')
    activation = intermediates[self.layer].astype(jnp.float32)
    if self.kind in ('channel', 'neuron'):
      values = _pool(activation) if self.kind == 'channel' else _centre(activation)
      return jnp.take_along_axis(values, targets[:, None], axis=-1)[:, 0]
    pooled = _pool(activation)
    dot = jnp.sum(pooled * targets, axis=-1)
    if self.kind == 'direction':
      return dot
    return dot / (jnp.linalg.norm(pooled, axis=-1) * jnp.linalg.norm(targets, axis=-1) + 1e-8)


def parse(spec: str) -> Objective:
  kind, _, layer = spec.partition(':')
  if kind not in KINDS:
    raise ConfigError(f'objective {spec!r}: kind must be one of {", ".join(KINDS)}')
  if kind == 'logit':
    if layer:
      raise ConfigError(f"objective {spec!r}: 'logit' takes no layer")
    return Objective('logit')
  if not layer:
    raise ConfigError(f"objective {spec!r}: '{kind}' needs a layer, e.g. '{kind}:stage3'")
  return Objective(kind, layer)


def classifier_forward(model, variables: Any, with_intermediates: bool = True) -> Forward:
  """images [N, h, w, 3] in [0, 1] -> (logits, {layer: activation}) for a zoo classifier in
  inference mode (each sown layer's last value)."""
  def forward(images):
    if not with_intermediates:
      return model.apply(variables, images, train=False), {}
    logits, state = model.apply(variables, images, train=False, mutable=['intermediates'])
    sown = state.get('intermediates', {})
    return logits, {name: values[-1] for name, values in sown.items()}
  return forward
