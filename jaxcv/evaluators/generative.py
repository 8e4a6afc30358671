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
  samplers         a sampler grid as well, e.g. 'ddim(steps=(2,4,8)),dpm_solver_pp(steps=(4,8))'
                   (a sampler without steps gets jaxcv.diffusion.samplers.DEFAULT_STEPS); every
                   point samples with sample_kwargs plus method, num_steps, guidance_scale and
                   max_steps (one compiled sampler serves the grid). Default '': no grid.
  guidance         the grid's guidance scales (a tuple, or text '1,2,3'; default: none, i.e.
                   the conditional model unguided)

Yields `fid[<feature space>]`, `kid[<feature space>]` and `kid_std[<feature space>]`, so every
logged number names the feature space it was measured in. With a grid also
`<sampler>/<steps>/w=<guidance>/fid[<space>]` (and kid) per point and
`<sampler>/<steps>/best_fid[<space>]`, `<sampler>/<steps>/best_guidance` over the guidance
scales; every point uses the same labels and initial noise (common random numbers). The grid's
artefacts (under <workdir>/<name>/): grid.json (the points), grid.md (best FID per sampler and
steps) and grid.png (best FID against steps).
"""

from __future__ import annotations

import functools
import inspect
import logging
import math
from typing import Optional

from jaxcv import parallel
from jaxcv.diffusion import fid as fid_lib
from jaxcv.diffusion import fid_features
from jaxcv.diffusion import samplers as samplers_lib
from jaxcv.errors import ConfigError
from jaxcv.evaluators.artefacts import new_figure
from jaxcv.evaluators.base import register

log = logging.getLogger(__name__)


@register('generative')
class GenerativeEvaluator:

  def __init__(self, eval_config, config, task, mesh, feature_space=None, artefacts=None):
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
    self.grid = samplers_lib.parse_samplers(eval_config.get('samplers') or '')
    guidance = eval_config.get('guidance') or ()
    if isinstance(guidance, str):
      guidance = [g for g in guidance.split(',') if g.strip()]
    try:
      self.guidance = tuple(float(g) for g in guidance) or (None,)
    except (TypeError, ValueError):
      raise ConfigError(f'guidance={guidance!r}: expected numbers, e.g. (1.0, 2.0)') from None
    self.artefacts = artefacts
    log.info('generative evaluator: %d samples, feature space %s (fingerprint %s), reference '
             'of %d images', self.num_samples, self.space.name, self.space.fingerprint,
             self.reference.count)

  def sample_stats(self, variables, seed: Optional[int] = None,
                   **sample_kwargs) -> fid_lib.FeatureStats:
    """Feature statistics of `num_samples` generated images (the same ones on every call with
    the same `seed`, default the configured one); `sample_kwargs` add to or replace the
    configured ones."""
    sample = functools.partial(self._sample, **sample_kwargs) if sample_kwargs else self._sample
    return fid_features.sample_stats(
        self.space, sample, variables, self.num_samples, batch_size=self.batch_size,
        num_classes=self.num_classes, seed=self.seed if seed is None else seed, keep=self.keep,
        label_sharding=self._label_sharding)

  def measure(self, variables, seed: Optional[int] = None, **sample_kwargs) -> dict:
    """fid_lib.compare's result (fid, kid, kid_std, ...) of the samples of `variables`; another
    `seed` draws other initial noise (the spread of the metric over seeds is its noise)."""
    seed = self.seed if seed is None else seed
    return fid_lib.compare(self.sample_stats(variables, seed=seed, **sample_kwargs),
                           self.reference, kid_subsets=self.kid_subsets,
                           kid_subset_size=self.kid_subset_size, seed=seed)

  def grid_points(self, variables) -> list[dict]:
    """Quality at every (sampler, steps, guidance) of the grid."""
    max_steps = max((s for counts in self.grid.values() for s in counts), default=0)
    points = []
    for method, counts in self.grid.items():
      for steps in counts:
        for scale in self.guidance:
          result = self.measure(variables, method=method, num_steps=steps,
                                guidance_scale=scale, max_steps=max_steps)
          points.append({'sampler': method, 'steps': steps, 'guidance': scale,
                         **{k: result[k] for k in ('fid', 'kid', 'kid_std', 'num_samples')}})
          log.info('%s', points[-1])
    return points

  def run(self, variables):
    result = self.measure(variables)
    tag = result['feature_space']
    for name in ('fid', 'kid', 'kid_std'):
      if result[name] is not None:
        yield f'{name}[{tag}]', result[name]
    if not self.grid:
      return
    points = self.grid_points(variables)
    for p in points:
      prefix = f'{p["sampler"]}/{p["steps"]}/w={_scale_name(p["guidance"])}'
      yield f'{prefix}/fid[{tag}]', p['fid']
      if p['kid'] is not None:
        yield f'{prefix}/kid[{tag}]', p['kid']
    best = best_over_guidance(points)
    for p in best:
      yield f'{p["sampler"]}/{p["steps"]}/best_fid[{tag}]', p['fid']
      if p['guidance'] is not None:
        yield f'{p["sampler"]}/{p["steps"]}/best_guidance', p['guidance']
    if self.artefacts is not None:
      self.artefacts.json('grid.json', {'feature_space': tag, 'num_samples': self.num_samples,
                                        'points': points, 'best': best})
      self.artefacts.text('grid.md', grid_markdown(best, tag, self.num_samples))
      self.artefacts.figure('grid.png', grid_figure(best, tag))


def _scale_name(scale) -> str:
  return 'none' if scale is None else f'{scale:g}'


def best_over_guidance(points: list[dict]) -> list[dict]:
  """The lowest-FID point of each (sampler, steps), in grid order."""
  best: dict[tuple, dict] = {}
  for p in points:
    key = (p['sampler'], p['steps'])
    if key not in best or p['fid'] < best[key]['fid']:
      best[key] = p
  return list(best.values())


def grid_markdown(best: list[dict], feature_space: str, num_samples: int) -> str:
  lines = [f'# Sampler grid: best FID over guidance ({feature_space}, {num_samples} samples)',
           '', '| sampler | steps | FID | KID | guidance |', '|---|---|---|---|---|']
  for p in best:
    kid = '' if p['kid'] is None else f'{p["kid"]:.4f}'
    lines.append(f'| {p["sampler"]} | {p["steps"]} | {p["fid"]:.2f} | {kid} | '
                 f'{_scale_name(p["guidance"])} |')
  return '\n'.join(lines) + '\n'


def grid_figure(best: list[dict], feature_space: str):
  """Best FID against steps, one line per sampler (a matplotlib Figure, no pyplot)."""
  figure = new_figure(figsize=(5, 3.6))
  ax = figure.add_subplot()
  for method in dict.fromkeys(p['sampler'] for p in best):
    pts = sorted((p for p in best if p['sampler'] == method), key=lambda p: p['steps'])
    ax.plot([p['steps'] for p in pts], [p['fid'] for p in pts], 'o-', label=method)
  ax.set(xlabel='sampling steps', ylabel='best FID over guidance', title=feature_space)
  ax.legend(fontsize=8)
  figure.tight_layout()
  return figure
