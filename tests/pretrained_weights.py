"""Deterministic random weights for a PyTorch state-dict layout, with numpy only.

The pretrained-converter fixtures (tests/fixtures/pretrained/*.json) store a real network's
state-dict layout (key names, shapes, dtypes: torchvision's resnet18/resnet50, timm's ViT), an
input and the logits PyTorch computes with these weights. The weights themselves are not stored:
both the fixture script (scripts/make_pretrained_fixtures.py, with torch) and the tests (without
torch) draw them here from the fixture's seed, so a full ResNet-50 layout costs a few kB.
"""

from __future__ import annotations

import numpy as np


def synthetic_state_dict(layout: list[dict], seed: int) -> dict[str, np.ndarray]:
  """{key: array} for `layout` ([{'key', 'shape', 'dtype'}], in state-dict order).

  Scales keep activations of order one through deep networks: fan-in scaled conv and linear
  weights, BatchNorm statistics near (0, 1), affine weights near 1, small biases.
  """
  rng = np.random.default_rng(seed)
  out = {}
  for entry in layout:
    key, shape, dtype = entry['key'], tuple(entry['shape']), entry['dtype']
    name = key.rsplit('.', 1)[-1]
    if dtype.startswith('int'):
      out[key] = np.zeros(shape, np.int64)
      continue
    if name == 'running_var':
      value = rng.uniform(0.5, 1.5, shape)
    elif name == 'running_mean':
      value = 0.1 * rng.standard_normal(shape)
    elif len(shape) == 1 and name == 'weight':  # BatchNorm / LayerNorm scale.
      value = rng.uniform(0.6, 1.0, shape)
    elif len(shape) == 1:  # Biases.
      value = 0.1 * rng.standard_normal(shape)
    elif name in ('cls_token', 'pos_embed'):
      value = 0.5 * rng.standard_normal(shape)
    else:  # Conv [O, I, kh, kw] and linear [O, I] weights.
      fan_in = int(np.prod(shape[1:]))
      gain = 2.0 if len(shape) == 4 else 1.0
      value = np.sqrt(gain / fan_in) * rng.standard_normal(shape)
    out[key] = value.astype(np.float32)
  return out
