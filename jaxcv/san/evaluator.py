"""The 'pixel_geometry' evaluator: alignment and uniformity of a task's pixel embeddings.

SAN's analysis (Wang & Isola's two properties, jaxcv/segmentation/clusters.py) measured on the
L2-normalised pixel embeddings of the task's predict function `predict` (default 'embed'):
  alignment   mean over every pixel of ||f(x) - f(x+)||^2, x+ the same image colour-jittered and
              flipped (fixed seed), its embeddings flipped back: the same pixel in two views;
  uniformity  log mean over pairs of exp(-t ||f_i - f_j||^2) over `pixels` pixels drawn at
              random (fixed seed) from every evaluated image (pairs across images included).
Config keys: split, dataset (default config.data.name), max_examples (default 32, evenly spaced),
batch_size (default 16), pixels (default 2048), t (2), alpha (2), predict, seed.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxcv.data import augment
from jaxcv.data.registry import load_dataset
from jaxcv.evaluators.base import predict_function, register
from jaxcv.san.views import ViewOptions, jitter
from jaxcv.segmentation import clusters


@register('pixel_geometry')
class PixelGeometryEvaluator:

  def __init__(self, eval_config, config, task, mesh):
    del mesh
    dataset = eval_config.get('dataset') or config.data.name
    data = load_dataset(dataset, eval_config.split, config.data.data_dir, config.data.image_size)
    n = int(eval_config.get('max_examples', 32) or len(data))
    if n < len(data):
      data = data.subset(np.linspace(0, len(data) - 1, n).astype(int))
    self.images = data.images
    self.batch_size = int(eval_config.get('batch_size', 16))
    self.pixels = int(eval_config.get('pixels', 2048))
    self.t, self.alpha = float(eval_config.get('t', 2.0)), float(eval_config.get('alpha', 2.0))
    self.seed = int(eval_config.get('seed', 0))
    predict = predict_function(task, eval_config.get('predict', 'embed'), 'pixel_geometry')
    views = ViewOptions()

    def pair(variables, images, rng):
      x = augment.to_float(images)
      f = clusters.l2_normalize(predict(variables, x))
      positive = jitter(rng, x, views)[:, :, ::-1]
      f_pos = clusters.l2_normalize(predict(variables, positive))[:, :, ::-1]
      return f, jnp.sum(jnp.square(f - f_pos), -1) ** (self.alpha / 2)
    self._pair = jax.jit(pair)
    self._uniformity = jax.jit(lambda f: clusters.uniformity(f, self.t))

  def run(self, variables):
    rng = jax.random.PRNGKey(self.seed)
    embeddings, distances = [], []
    for start in range(0, len(self.images), self.batch_size):
      f, d = self._pair(variables, jnp.asarray(self.images[start:start + self.batch_size]),
                        jax.random.fold_in(rng, start))
      embeddings.append(np.asarray(f))
      distances.append(np.asarray(d))
    f = np.concatenate(embeddings).reshape(-1, embeddings[0].shape[-1])
    pick = np.random.default_rng(self.seed).choice(len(f), min(self.pixels, len(f)),
                                                   replace=False)
    yield 'alignment', float(np.mean(np.concatenate([d.ravel() for d in distances])))
    yield 'uniformity', float(self._uniformity(jnp.asarray(f[pick])))
