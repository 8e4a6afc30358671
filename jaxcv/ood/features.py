"""One feature-extraction pass of a trained jaxcv classifier over a dataset split -> FeatureSet.

- The classifier is a `jaxcv.inference.Classifier`: `load_classifier(run)` (that is,
  `inference.load_run(run).classifier()`) for a saved run, or the `ood` evaluator's export of
  the weights it is given.
- `extract(classifier, images)`: logits, penultimate features and optionally per-layer pooled
  features (the `intermediates` every zoo model sows, averaged over all but the batch and
  channel axes), batched and jitted.
- `dataset_features(classifier, data, name)`: the same, cached as .npz under
  `$JAXCV_CACHE_DIR/ood_features/`, keyed by (the classifier's fingerprint: run, step and EMA
  or not, or a digest of the weights; dataset name and split, content digest of the images,
  input shape, layers).

Images of another size or channel count than the model's input (MNIST's 28x28 grey, Tiny
ImageNet's 64x64 or DTD's 96x96 against a 32x32 RGB CIFAR model) are converted inside the jitted
pass: resized with `jax.image.resize` (bilinear, antialiased when shrinking, like PIL) and grey
repeated to RGB (RGB to grey by ITU-R 601 luma).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxcv.data import augment, cache
from jaxcv.data.dataset import ArrayDataset
from jaxcv.errors import ConfigError
from jaxcv import inference
from jaxcv.inference import Classifier
from jaxcv.ood.featureset import FeatureSet

log = logging.getLogger(__name__)

_CACHE_VERSION = 2  # Bump when extraction or the stored layout changes.
_LUMA = (0.299, 0.587, 0.114)


def load_classifier(run: str, use_ema: Optional[bool] = None) -> Classifier:
  """`jaxcv.inference.load_run(run, weights).classifier()`, with `use_ema` None/True/False
  meaning weights 'auto'/'ema'/'plain'."""
  weights = {None: 'auto', True: 'ema', False: 'plain'}[use_ema]
  return inference.load_run(run, weights).classifier()


def prepare_images(images: jax.Array, image_shape: Optional[Sequence[int]]) -> jax.Array:
  """uint8 or float [0, 1] NHWC images -> float32 [0, 1] at `image_shape` (H, W, C): resized
  (bilinear, antialiased) and grey <-> RGB converted as needed. Jittable."""
  x = augment.to_float(jnp.asarray(images))
  if image_shape is None:
    return x
  h, w, c = image_shape
  if x.shape[1:3] != (h, w):
    x = jax.image.resize(x, (x.shape[0], h, w, x.shape[3]), 'bilinear', antialias=True)
  if x.shape[3] == c:
    return x
  if x.shape[3] == 1:
    return jnp.repeat(x, c, axis=3)
  if x.shape[3] == 3 and c == 1:
    return jnp.sum(x * jnp.asarray(_LUMA, x.dtype), axis=3, keepdims=True)
  raise ConfigError(f'images with {x.shape[3]} channels cannot be fed to a model that takes '
                    f'{c} channels')


def _pool(value: jax.Array) -> jax.Array:
  """[N, ..., D] -> [N, D]: the mean over spatial positions or tokens, in float32."""
  value = value.astype(jnp.float32)
  return value if value.ndim == 2 else jnp.mean(value, axis=tuple(range(1, value.ndim - 1)))


def _layer_name(path) -> str:
  keys = [str(getattr(k, 'key', getattr(k, 'idx', k))) for k in path]
  if keys and keys[-1] == '0':  # sow stores a tuple of one value per name.
    keys = keys[:-1]
  return '/'.join(keys)


def map_batches(fn: Callable[[Any, jax.Array], Any], variables: Any, images: np.ndarray,
                batch_size: int) -> Any:
  """fn(variables, batch) over `images` in batches of `batch_size`, the last one padded (one
  compilation); the outputs' leading axes concatenated on the host and cut to len(images)."""
  if not len(images):
    raise ConfigError('cannot extract features of an empty image set')
  batch_size = min(batch_size, len(images))
  outputs = []
  for start in range(0, len(images), batch_size):
    batch = images[start:start + batch_size]
    if len(batch) < batch_size:
      batch = np.concatenate([batch, np.zeros((batch_size - len(batch), *batch.shape[1:]),
                                              batch.dtype)])
    outputs.append(jax.device_get(fn(variables, batch)))
  return jax.tree.map(lambda *parts: np.concatenate(parts)[:len(images)], *outputs)


def extract(classifier: Classifier, images: np.ndarray, labels: Optional[np.ndarray] = None, *,
            image_shape: Optional[Sequence[int]] = None, batch_size: int = 256,
            layers: bool = False, gram_powers: Sequence[int] = (),
            name: str = '') -> FeatureSet:
  """The FeatureSet of uint8 (or float [0, 1]) NHWC `images`: logits, penultimate features and,
  with `layers`, every sown intermediate pooled to [N, D_l]; with `gram_powers`, also the Gram
  row sums of every unpooled intermediate at each power, as layers 'gram/p{p}/{layer}' (for
  GRAM, detectors/layers.py). Images are converted to `image_shape` (H, W, C) when given (module
  docstring)."""
  from jaxcv.ood.detectors.layers import gram_key, gram_row_sums  # pylint: disable=import-outside-toplevel
  model = classifier.model
  image_shape = None if image_shape is None else tuple(image_shape)
  gram_powers = tuple(gram_powers)

  def make_forward():
    def forward(variables, batch):
      x = prepare_images(batch, image_shape)
      if not layers and not gram_powers:
        logits, features = model.apply(variables, x, train=False, return_features=True)
        return logits, features, {}
      (logits, features), state = model.apply(variables, x, train=False, return_features=True,
                                              mutable=['intermediates'])
      maps = {_layer_name(path): v for path, v in
              jax.tree_util.tree_flatten_with_path(state.get('intermediates', {}))[0]}
      out = {name: _pool(v) for name, v in maps.items()} if layers else {}
      out.update({gram_key(p, name): gram_row_sums(v, p) for name, v in maps.items()
                  for p in gram_powers})
      return logits, features, out
    return forward

  forward = classifier.jitted(('features', image_shape, layers, gram_powers), make_forward)
  logits, features, pooled = map_batches(forward, classifier.variables, images, batch_size)
  return FeatureSet(logits, features, labels, classifier.head, pooled, name)


def image_scores(classifier: Classifier, score_fn: Callable, images: np.ndarray, *,
                 image_shape: Optional[Sequence[int]] = None, batch_size: int = 256) -> np.ndarray:
  """Scores of a detector that needs the model (e.g. ODIN): `score_fn(predict_fn)` gives the
  batch function, `predict_fn(float images) -> logits` the classifier. float64 [N]."""
  image_shape = None if image_shape is None else tuple(image_shape)

  def make_batch_scores():
    def batch_scores(variables, batch):
      predict = lambda x: classifier.logits(variables, x)
      return score_fn(predict)(prepare_images(batch, image_shape))
    return batch_scores

  fn = classifier.jitted(('scores', score_fn, image_shape), make_batch_scores)
  return np.asarray(map_batches(fn, classifier.variables, images, batch_size), np.float64)


def default_cache_dir() -> Optional[Path]:
  """`$JAXCV_CACHE_DIR/ood_features`, or None when the cache is turned off."""
  root = cache.cache_dir()
  return None if root is None else root / 'ood_features'


def dataset_features(classifier: Classifier, data: ArrayDataset, name: str, *,
                     image_shape: Optional[Sequence[int]] = None, batch_size: int = 256,
                     layers: bool = False, gram_powers: Sequence[int] = (),
                     cache_dir: Optional[os.PathLike | str] = None) -> FeatureSet:
  """`extract` of a loaded split `data` (labels included), read from / written to `cache_dir`
  when given. `name` ('cifar10:test', 'mnist:test[1000,seed=0]') goes into the key and the
  FeatureSet; a changed image content changes the key, so do other weights."""
  key = {'version': _CACHE_VERSION, 'weights': classifier.fingerprint, 'dataset': name,
         'count': len(data), 'content': cache.content_digest(data.images),
         'image_shape': None if image_shape is None else list(image_shape), 'layers': layers}
  if gram_powers:  # Only then, so that existing cache entries keep their keys.
    key['gram_powers'] = list(gram_powers)

  def compute() -> FeatureSet:
    log.info('extracting features of %s (%d images)', name, len(data))
    labels = np.asarray(data.labels)
    labels = labels if labels.ndim == 1 else None  # Class labels only, not segmentation maps.
    return extract(classifier, data.images, labels, image_shape=image_shape,
                   batch_size=batch_size, layers=layers, gram_powers=gram_powers, name=name)

  path = cache.keyed_path(cache_dir, f'{name}-{classifier.name}', key)
  return cache.cached_file(path, compute, load=lambda p: FeatureSet.load(p, classifier.head),
                           write=lambda fs, tmp: fs.save(tmp), what=f'features of {name}')
