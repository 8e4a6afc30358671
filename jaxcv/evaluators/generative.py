"""FID and KID of a generative task's samples against cached statistics of the real data.

Config keys (`config.evals.<name>`, type 'generative'):
  feature_space    'inception' (FID Inception-v3 pool-3; needs its weight file) or
                   'classifier:<checkpoint>' (a jaxcv classifier's penultimate features)
  num_samples      images generated per evaluation (default 10000)
  batch_size       images per sampling call (default 500; rounded up to the mesh's batch divisor)
  predict          the task's predict function to sample with (default 'sample'); it is called
                   as `fn(variables, rng, labels, **sample_kwargs)` -> float images in [0, 1],
                   with int32 labels [B] cycling over the classes (an unconditional model uses
                   only their count), plus `mesh=` when it takes a `mesh` argument. It compiles
                   itself (the diffusion task's `generate` does); the evaluator does not jit it.
  sample_kwargs    keyword arguments for it, e.g. {'method': 'ddim', 'num_steps': 50,
                   'guidance_scale': 2.0}
  dataset, split   the real data (default: config.data.name, 'train')
  reference        a stored `ReferenceStats` .npz to use instead of computing the statistics
  max_reference    use an evenly spaced subset of the real split of this size
  kid_subsets, kid_subset_size   KID averaging (defaults 100 and 1000, as torch-fidelity)
  keep             feature rows kept per side for KID (default 10000)
  cache_dir        where reference statistics are cached (default $JAXCV_CACHE_DIR/fid_stats)
  seed             sampling seed (default 0): the same seed gives the same images every time

Yields `fid[<feature space>]`, `kid[<feature space>]` and `kid_std[<feature space>]`, so every
logged number names the feature space it was measured in.
"""

from __future__ import annotations

import functools
import inspect
import logging
import math

from jaxcv import parallel
from jaxcv.diffusion import fid as fid_lib
from jaxcv.diffusion import fid_features
from jaxcv.errors import ConfigError
from jaxcv.evaluators.base import register

log = logging.getLogger(__name__)


@register('generative')
class GenerativeEvaluator:

  def __init__(self, eval_config, config, task, mesh, feature_space=None):
    spec = eval_config.get('feature_space')
    if feature_space is None and not spec:
      raise ConfigError("a 'generative' evaluator needs feature_space: 'inception' or "
                        "'classifier:<checkpoint of a jaxcv classifier run>'")
    predict_name = eval_config.get('predict', 'sample')
    predict_fns = task.predict_fns()
    if predict_name not in predict_fns:
      raise ConfigError(f'task {type(task).__name__} has no predict function {predict_name!r} '
                        f'to sample with; it has: {sorted(predict_fns)}')
    self.space = feature_space or fid_features.build_feature_space(spec)
    self.space.replicate(parallel.replicated(mesh))
    self.keep = eval_config.get('keep', fid_features.DEFAULT_KEEP)
    if eval_config.get('reference'):
      self.reference = fid_features.load_reference(eval_config.reference)
    else:
      self.reference = fid_features.reference_stats(
          self.space, eval_config.get('dataset') or config.data.name,
          eval_config.get('split', 'train'), data_dir=config.data.data_dir,
          image_size=config.data.image_size, max_examples=eval_config.get('max_reference'),
          keep=self.keep, cache_dir=eval_config.get('cache_dir'))
    if self.reference.feature_space != self.space.name:
      raise ConfigError(f'reference statistics are in feature space '
                        f'{self.reference.feature_space!r}, the evaluator uses {self.space.name!r}')

    sample_fn = predict_fns[predict_name]
    sample_kwargs = eval_config.get('sample_kwargs') or {}
    sample_kwargs = dict(sample_kwargs.to_dict() if hasattr(sample_kwargs, 'to_dict')
                         else sample_kwargs)
    if 'mesh' in inspect.signature(sample_fn).parameters:
      sample_kwargs['mesh'] = mesh
    self._sample = functools.partial(sample_fn, **sample_kwargs)

    self.num_samples = int(eval_config.get('num_samples', 10_000))
    if self.num_samples < 2:
      raise ConfigError(f'num_samples={self.num_samples}: FID needs at least 2 samples')
    divisor = parallel.batch_divisor(mesh)
    self.batch_size = math.ceil(min(eval_config.get('batch_size', 500), self.num_samples)
                                / divisor) * divisor
    self.num_classes = max(int(task.info.num_classes), 1)
    self.seed = int(eval_config.get('seed', 0))
    self.kid_subsets = int(eval_config.get('kid_subsets', 100))
    self.kid_subset_size = int(eval_config.get('kid_subset_size', 1000))
    self._label_sharding = parallel.batch_sharding(mesh)
    log.info('generative evaluator: %d samples, feature space %s (fingerprint %s), reference '
             'of %d images', self.num_samples, self.space.name, self.space.fingerprint,
             self.reference.count)

  def sample_stats(self, variables) -> fid_lib.FeatureStats:
    """Feature statistics of `num_samples` generated images (the same ones on every call)."""
    return fid_features.sample_stats(
        self.space, self._sample, variables, self.num_samples, batch_size=self.batch_size,
        num_classes=self.num_classes, seed=self.seed, keep=self.keep,
        label_sharding=self._label_sharding)

  def run(self, variables):
    result = fid_lib.compare(self.sample_stats(variables), self.reference,
                             kid_subsets=self.kid_subsets, kid_subset_size=self.kid_subset_size,
                             seed=self.seed)
    tag = result['feature_space']
    for name in ('fid', 'kid', 'kid_std'):
      if result[name] is not None:
        yield f'{name}[{tag}]', result[name]
