"""One feature-extraction pass of a trained jaxcv classifier over a dataset split -> FeatureSet.

- `load_classifier(checkpoint)`: the model named by the run's config.json and its weights (EMA
  ones when the run evaluated with them), plus the head as numpy.
- `extract(classifier, images)`: logits, penultimate features and optionally per-layer pooled
  features (the `intermediates` every zoo model sows, averaged over all but the batch and
  channel axes), batched and jitted.
- `dataset_features(classifier, data, name)`: the same, cached as .npz under
  `$JAXCV_CACHE_DIR/ood_features/`, keyed by (checkpoint path, step, EMA or not, dataset name
  and split, content digest of the images, input shape, layers).

Images of another size or channel count than the model's input (MNIST's 28x28 grey, Tiny
ImageNet's 64x64 or DTD's 96x96 against a 32x32 RGB CIFAR model) are converted inside the jitted
pass: resized with `jax.image.resize` (bilinear, antialiased when shrinking, like PIL) and grey
repeated to RGB (RGB to grey by ITU-R 601 luma).
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxcv import checkpoint as checkpoint_lib
from jaxcv.data import augment, cache
from jaxcv.data.dataset import ArrayDataset
from jaxcv.errors import ConfigError
from jaxcv.ood.featureset import FeatureSet, Head

log = logging.getLogger(__name__)

_CACHE_VERSION = 1  # Bump when extraction or the stored layout changes.
_LUMA = (0.299, 0.587, 0.114)


@dataclasses.dataclass
class Classifier:
  """A trained jaxcv classifier ready for inference.

  Attributes:
    model: the linen module (`__call__(x, train=False, return_features=True)`).
    variables: {'params': ..., plus model state such as 'batch_stats'}.
    config: the run's config.json as a dict.
    checkpoint: the resolved checkpoint path; with `step` and `use_ema` it names the weights.
  """
  model: nn.Module
  variables: Any
  config: dict
  checkpoint: str
  step: int
  use_ema: bool
  # Jitted passes by (kind, input shape, options): splits of one shape compile once.
  _jitted: dict = dataclasses.field(default_factory=dict, repr=False, compare=False)

  def jitted(self, key: tuple, make: Callable[[], Callable]) -> Callable:
    """jax.jit(make()), made once per `key`."""
    if key not in self._jitted:
      self._jitted[key] = jax.jit(make())
    return self._jitted[key]

  @functools.cached_property
  def head(self) -> Head:
    params = self.variables['params']['head']
    return Head(np.asarray(params['kernel']), np.asarray(params['bias']))

  @property
  def name(self) -> str:
    return f'{Path(self.checkpoint).name}@{self.step}'

  def logits(self, variables, images: jax.Array) -> jax.Array:
    """float32 logits of float [0, 1] images already at the model's input shape."""
    return self.model.apply(variables, images, train=False).astype(jnp.float32)


def load_classifier(checkpoint: str, use_ema: Optional[bool] = None) -> Classifier:
  """The classifier saved under `checkpoint` (a run's workdir, its checkpoints folder or a step
  folder), the model named by the run's config.json. `use_ema` None takes the EMA parameters
  when the run kept them and evaluated with them; True requires them; False takes the trained
  ones."""
  from jaxcv.models import build_model  # pylint: disable=import-outside-toplevel
  path = Path(checkpoint).expanduser().resolve()
  weights = checkpoint_lib.load_run_weights(str(path), use_ema)
  if weights.config is None:
    raise ConfigError(f'no config.json found at or above {path}: OOD evaluation needs the run '
                      'folder written by jaxcv training (it names the model)')
  params = weights.params
  if 'head' not in params:
    raise ConfigError(f'checkpoint {checkpoint} holds no classifier (no `head` parameters)')
  model_config = weights.config.get('model') or {}
  num_classes = int(np.shape(params['head']['kernel'])[-1])
  model = build_model(model_config['name'], num_classes, **(model_config.get('kwargs') or {}))
  # On the device once, not with every batch.
  return Classifier(model, jax.device_put(weights.variables), weights.config, str(path),
                    int(weights.step), weights.used_ema)


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
            layers: bool = False, name: str = '') -> FeatureSet:
  """The FeatureSet of uint8 (or float [0, 1]) NHWC `images`: logits, penultimate features and,
  with `layers`, every sown intermediate pooled to [N, D_l]. Images are converted to
  `image_shape` (H, W, C) when given (module docstring)."""
  model = classifier.model
  image_shape = None if image_shape is None else tuple(image_shape)

  def make_forward():
    def forward(variables, batch):
      x = prepare_images(batch, image_shape)
      if not layers:
        logits, features = model.apply(variables, x, train=False, return_features=True)
        return logits, features, {}
      (logits, features), state = model.apply(variables, x, train=False, return_features=True,
                                              mutable=['intermediates'])
      pooled = {_layer_name(path): _pool(v) for path, v in
                jax.tree_util.tree_flatten_with_path(state.get('intermediates', {}))[0]}
      return logits, features, pooled
    return forward

  forward = classifier.jitted(('features', image_shape, layers), make_forward)
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
                     layers: bool = False,
                     cache_dir: Optional[os.PathLike | str] = None) -> FeatureSet:
  """`extract` of a loaded split `data` (labels included), read from / written to `cache_dir`
  when given. `name` ('cifar10:test', 'mnist:test[1000,seed=0]') goes into the key and the
  FeatureSet; a changed image content changes the key, so does another checkpoint step."""
  key = {'version': _CACHE_VERSION, 'checkpoint': classifier.checkpoint,
         'step': classifier.step, 'ema': classifier.use_ema, 'dataset': name,
         'count': len(data), 'content': cache.content_digest(data.images),
         'image_shape': None if image_shape is None else list(image_shape), 'layers': layers}

  def compute() -> FeatureSet:
    log.info('extracting features of %s (%d images)', name, len(data))
    labels = np.asarray(data.labels)
    labels = labels if labels.ndim == 1 else None  # Class labels only, not segmentation maps.
    return extract(classifier, data.images, labels, image_shape=image_shape,
                   batch_size=batch_size, layers=layers, name=name)

  path = cache.keyed_path(cache_dir, f'{name}-{classifier.name}', key)
  return cache.cached_file(path, compute, load=lambda p: FeatureSet.load(p, classifier.head),
                           write=lambda fs, tmp: fs.save(tmp), what=f'features of {name}')
