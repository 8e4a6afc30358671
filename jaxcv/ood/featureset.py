"""What one feature-extraction pass gives every detector: logits, penultimate features, labels,
the classifier head and (optionally) per-layer pooled features, as host numpy arrays."""

from __future__ import annotations

import dataclasses
import os
from typing import Mapping, Optional

import numpy as np

from jaxcv.errors import ConfigError

# What a detector may require of a FeatureSet ('model' is met by images and a predict_fn instead).
REQUIREMENTS = ('logits', 'features', 'labels', 'head', 'layers', 'model')


@dataclasses.dataclass
class Head:
  """The classifier's last layer in flax layout: logits = features @ kernel + bias."""
  kernel: np.ndarray  # [D, C]
  bias: np.ndarray  # [C]

  def __post_init__(self):
    self.kernel = np.asarray(self.kernel)
    self.bias = np.asarray(self.bias)
    if self.kernel.ndim != 2 or self.bias.shape != self.kernel.shape[1:]:
      raise ConfigError(f'head kernel {self.kernel.shape} and bias {self.bias.shape} do not '
                        'form a linear layer [D, C] + [C]')

  def __call__(self, features: np.ndarray) -> np.ndarray:
    """float64 logits of (possibly edited) features [N, D]."""
    return np.asarray(features, np.float64) @ self.kernel.astype(np.float64) + self.bias


@dataclasses.dataclass
class FeatureSet:
  """One split seen through one classifier. Every array is indexed by example.

  Attributes:
    logits: [N, C] float, or None.
    features: [N, D] penultimate (pooled) features, or None; `head(features) == logits`.
    labels: [N] int class labels (needed to fit class-conditional detectors), or None.
    head: the classifier head, for detectors that edit features or use W and b, or None.
    layers: per-layer pooled features, name -> [N, D_l] (e.g. 'stage1', 'block12').
    name: what the set is, for messages ('cifar10:test').
  """
  logits: Optional[np.ndarray] = None
  features: Optional[np.ndarray] = None
  labels: Optional[np.ndarray] = None
  head: Optional[Head] = None
  layers: Mapping[str, np.ndarray] = dataclasses.field(default_factory=dict)
  name: str = ''

  def __post_init__(self):
    if self.logits is None and self.features is None:
      raise ConfigError(f'feature set {self.name!r} holds neither logits nor features')
    rows = {}
    for field in ('logits', 'features'):
      value = getattr(self, field)
      if value is not None:
        value = np.asarray(value)
        if value.ndim != 2:
          raise ConfigError(f'feature set {self.name!r}: {field} must be [N, dim], got shape '
                            f'{value.shape}')
        setattr(self, field, value)
        rows[field] = len(value)
    if self.labels is not None:
      self.labels = np.asarray(self.labels)
      if self.labels.ndim != 1:
        raise ConfigError(f'feature set {self.name!r}: labels must be [N], got shape '
                          f'{self.labels.shape}')
      rows['labels'] = len(self.labels)
    self.layers = {k: np.asarray(v) for k, v in self.layers.items()}
    rows.update({f'layers[{k!r}]': len(v) for k, v in self.layers.items()})
    if len(set(rows.values())) > 1:
      raise ConfigError(f'feature set {self.name!r}: mismatched example counts {rows}')
    self._check_head()

  def _check_head(self):
    if self.head is None:
      return
    dim, classes = self.head.kernel.shape
    if self.features is not None and self.features.shape[1] != dim:
      raise ConfigError(f'feature set {self.name!r}: features have dim {self.features.shape[1]} '
                        f'but the head expects {dim}')
    if self.logits is not None and self.logits.shape[1] != classes:
      raise ConfigError(f'feature set {self.name!r}: {self.logits.shape[1]} logits but the head '
                        f'has {classes} classes')

  def __len__(self) -> int:
    return len(self.logits if self.logits is not None else self.features)

  @property
  def num_classes(self) -> int:
    if self.logits is not None:
      return self.logits.shape[1]
    if self.head is not None:
      return self.head.kernel.shape[1]
    raise ConfigError(f'feature set {self.name!r} has no logits or head to count classes by')

  def missing(self, requirements) -> list[str]:
    """The requirements (REQUIREMENTS names) this set cannot meet; 'model' is never met here."""
    have = {'logits': self.logits is not None, 'features': self.features is not None,
            'labels': self.labels is not None, 'head': self.head is not None,
            'layers': bool(self.layers), 'model': False}
    unknown = set(requirements) - set(have)
    if unknown:
      raise ValueError(f'unknown requirements {sorted(unknown)}; known: {REQUIREMENTS}')
    return sorted(r for r in requirements if not have[r])

  def subset(self, indices) -> 'FeatureSet':
    """The examples at `indices` (any numpy index); the head is shared."""
    take = lambda a: None if a is None else a[indices]
    return FeatureSet(take(self.logits), take(self.features), take(self.labels), self.head,
                      {k: v[indices] for k, v in self.layers.items()}, self.name)

  def save(self, path: os.PathLike | str) -> None:
    """An uncompressed .npz (the head is not stored: it belongs to the checkpoint)."""
    arrays = {k: getattr(self, k) for k in ('logits', 'features', 'labels')
              if getattr(self, k) is not None}
    arrays.update({f'layer/{k}': v for k, v in self.layers.items()})
    arrays['name'] = np.asarray(self.name)
    with open(path, 'wb') as f:
      np.savez(f, **arrays)

  @classmethod
  def load(cls, path: os.PathLike | str, head: Optional[Head] = None) -> 'FeatureSet':
    with np.load(path, allow_pickle=False) as z:
      get = lambda k: z[k] if k in z.files else None
      layers = {k.partition('/')[2]: z[k] for k in z.files if k.startswith('layer/')}
      return cls(get('logits'), get('features'), get('labels'), head, layers, str(z['name']))
