"""Feature spaces for FID/KID, and cached feature statistics of real datasets.

Two kinds of feature space:

- `'inception'`: the 2048-d pool-3 features of the FID Inception-v3 (`jaxcv.models.inception`),
  the standard one, comparable with published FIDs; needs pytorch-fid's weight file.
- `'classifier:<checkpoint>'`: the penultimate (pooled) features of a classifier trained with
  jaxcv, e.g. a CIFAR-10 ResNet-18 run. Needs no external weights; its numbers are internally
  consistent (same checkpoint, same data) but are a proxy, not comparable with published FIDs.

Each `FeatureSpace` carries its `name` ('inception-v3-pool3' or 'classifier:<run folder name>'),
which every statistic and result inherits. Real-data statistics are computed once per (feature
space, dataset, split, ...) and cached as .npz under `$JAXCV_CACHE_DIR/fid_stats/`.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from pathlib import Path
from typing import Any, Callable, Iterable, Optional

import jax
import jax.numpy as jnp
import numpy as np

from jaxcv.data import cache
from jaxcv.diffusion.fid import FeatureStats, ReferenceStats
from jaxcv.errors import ConfigError, UserError

log = logging.getLogger(__name__)

INCEPTION = 'inception-v3-pool3'
_CACHE_VERSION = 1  # Bump when feature extraction or the stored layout changes.
DEFAULT_KEEP = 10_000  # Feature rows of the real data kept for KID.


@dataclasses.dataclass
class FeatureSpace:
  """A named map from float [0, 1] NHWC images to [N, D] float32 features (jitted)."""
  name: str
  dim: int
  fingerprint: str  # Identifies the weights, for cache keys.
  variables: Any
  apply_fn: Callable[[Any, jax.Array], jax.Array]
  image_size: Optional[int] = None  # Images are resized to this square size first, when set.

  def __post_init__(self):
    size = self.image_size

    def features(variables, images):
      images = jnp.asarray(images)
      if images.dtype == jnp.uint8:
        images = images.astype(jnp.float32) / 255.0
      if size is not None and images.shape[1:3] != (size, size):
        images = jax.image.resize(images, (images.shape[0], size, size, images.shape[3]),
                                  'bilinear', antialias=False)
      return self.apply_fn(variables, images).astype(jnp.float32)
    self._jitted = jax.jit(features)

  def __call__(self, images) -> jax.Array:
    return self._jitted(self.variables, images)

  def replicate(self, sharding) -> 'FeatureSpace':
    """Places the weights with `sharding` (e.g. replicated over the evaluation mesh)."""
    self.variables = jax.device_put(self.variables, sharding)
    return self


def inception_space(weights: Optional[str] = None) -> FeatureSpace:
  """pool-3 of the FID Inception-v3; `weights` as in `jaxcv.models.inception.find_weights`."""
  from jaxcv.models import inception  # pylint: disable=import-outside-toplevel
  path = inception.find_weights(weights)
  model, variables = inception.load_fid_inception(path)
  return FeatureSpace(name=INCEPTION, dim=inception.FEATURE_DIM,
                      fingerprint=f'{path.name}:{path.stat().st_size}', variables=variables,
                      apply_fn=lambda v, x: model.apply(v, x))


def classifier_space(checkpoint: str, *, use_ema: Optional[bool] = None,
                     name: Optional[str] = None) -> FeatureSpace:
  """Penultimate features of the jaxcv classifier saved under `checkpoint` (a run's workdir,
  its checkpoints folder or one step folder), loaded with `jaxcv.inference.load_run` and
  exported as a plain classifier (an AFD run's D1 folded in). `use_ema` None takes the EMA
  parameters when the run kept them and evaluated with them, True requires them, False takes
  the trained ones. The space is named 'classifier:<name>', by default the run folder's name;
  the cache key holds the full path and step.
  """
  from jaxcv import inference  # pylint: disable=import-outside-toplevel
  path = Path(checkpoint).expanduser().resolve()
  run = inference.load_run(path, {None: 'auto', True: 'ema', False: 'plain'}[use_ema])
  classifier = run.classifier()
  image_size = run.config.data.get('image_size')
  apply_fn = lambda v, x: classifier.features(v, x)[1]
  dim = int(classifier.head.kernel.shape[0])  # The head maps the features to logits.
  # Named after the run folder: metric names carry it, and they must not contain '/'.
  return FeatureSpace(name=f'classifier:{name or run.run_dir.name}', dim=dim,
                      fingerprint=f'{path}:step={run.step}', variables=classifier.variables,
                      apply_fn=apply_fn, image_size=image_size)


def build_feature_space(spec: str) -> FeatureSpace:
  """'inception' (or 'inception-v3-pool3', 'inception:<weights file>') or
  'classifier:<checkpoint>'."""
  kind, _, arg = spec.partition(':')
  if kind in ('inception', INCEPTION):
    return inception_space(arg or None)
  if kind == 'classifier' and arg:
    return classifier_space(arg)
  raise ConfigError(f"feature_space={spec!r}: expected 'inception', 'inception:<weights file>' "
                    "or 'classifier:<checkpoint>'")


def feature_stats(space: FeatureSpace, batches: Iterable[Any], keep: int = DEFAULT_KEEP
                 ) -> FeatureStats:
  """Streams image batches (uint8 or float [0, 1], NHWC) through `space` into FeatureStats."""
  stats = FeatureStats(space.name, keep=keep)
  for images in batches:
    stats.update(jax.device_get(space(images)))
  return stats


def sample_stats(space: FeatureSpace, sample_fn: Callable[..., Any], variables: Any,
                 num_samples: int, *, batch_size: int = 500, num_classes: int = 1, seed: int = 0,
                 keep: int = DEFAULT_KEEP, label_sharding=None) -> FeatureStats:
  """Feature statistics of `num_samples` images from `sample_fn(variables, rng, labels)`.

  Labels are int32 [batch_size] with example i getting class i mod num_classes (balanced); a
  sampler of an unconditional model uses only their count. Batch b uses
  `fold_in(key(seed), b)`, so the same seed gives the same images on every call. The last
  batch is generated whole and cut on the host.
  """
  stats = FeatureStats(space.name, keep=keep)
  rng = jax.random.key(seed)
  for index, start in enumerate(range(0, num_samples, batch_size)):
    labels = (np.arange(start, start + batch_size) % max(num_classes, 1)).astype(np.int32)
    labels = jax.device_put(labels, label_sharding) if label_sharding is not None else labels
    images = sample_fn(variables, jax.random.fold_in(rng, index), labels)
    stats.update(jax.device_get(space(images))[:num_samples - start])
  return stats


def _array_batches(images: np.ndarray, batch_size: int):
  for start in range(0, len(images), batch_size):
    yield images[start:start + batch_size]


def _stats_cache_dir(cache_dir: Optional[str]) -> Optional[Path]:
  if cache_dir:
    return Path(cache_dir).expanduser()
  root = cache.cache_dir()
  return None if root is None else root / 'fid_stats'


def reference_stats(space: FeatureSpace, dataset: str, split: str = 'train', *,
                    data_dir: Optional[str] = None, image_size: Optional[int] = None,
                    max_examples: Optional[int] = None, batch_size: int = 500,
                    keep: int = DEFAULT_KEEP, cache_dir: Optional[str] = None
                   ) -> ReferenceStats:
  """Feature statistics of a real dataset split, from the cache when computed before.

  The cache key covers the feature space (name and weights), the dataset's content digest,
  the split, image size, `max_examples` (an evenly spaced subset) and `keep`.
  """
  from jaxcv.data.registry import load_dataset  # pylint: disable=import-outside-toplevel
  data = load_dataset(dataset, split, data_dir, image_size)
  images = data.images
  if max_examples and max_examples < len(images):
    images = images[np.linspace(0, len(images) - 1, max_examples).astype(int)]
  key = {'version': _CACHE_VERSION, 'space': space.name, 'weights': space.fingerprint,
         'dataset': dataset, 'split': split, 'image_size': image_size, 'count': len(images),
         'content': cache.content_digest(images), 'keep': keep}

  def compute() -> ReferenceStats:
    log.info('computing %s statistics of %s:%s (%d images)', space.name, dataset, split,
             len(images))
    return feature_stats(space, _array_batches(images, batch_size), keep=keep).to_reference(
        **{k: v for k, v in key.items() if k != 'version'})

  def load(path) -> Optional[ReferenceStats]:
    stats = ReferenceStats.load(path)
    return stats if stats.feature_space == space.name else None

  path = cache.keyed_path(_stats_cache_dir(cache_dir), f'{dataset}-{split}-{space.name}', key)
  return cache.cached_file(path, compute, load=load, write=lambda stats, tmp: stats.save(tmp),
                           what=f'{space.name} reference statistics of {dataset}:{split}')


def load_reference(path: str) -> ReferenceStats:
  """Reference statistics stored by `ReferenceStats.save` (e.g. precomputed elsewhere)."""
  if not os.path.isfile(path):
    raise UserError(f'reference statistics file {path} not found')
  return ReferenceStats.load(path)
