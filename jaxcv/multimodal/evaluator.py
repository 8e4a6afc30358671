"""SBM's measurements: coherence of conditional and unconditional generation, and an FID proxy.

`sbm` (config.evals.<name>.type = 'sbm', on an sbm_score run):
  classifiers     'run0;run1;...': one digit-classifier run per modality (jaxcv.inference)
  split, max_examples   the evaluation tuples (default: test, 1000)
  num_unconditional     unconditional samples (default 1000)
  num_steps, snr, eps_sample   the predictor-corrector sampler (default 100, 0.16, 1e-3)
  variants        which samplers to measure, ','-separated (default all):
                    pc     Euler-Maruyama predictor + Langevin corrector (the paper's default)
                    em     predictor only (no corrector)
                    quirk  pc with the official code's observed-noise quirk (a z + sigma z)
                    indep  no score model: every unobserved latent drawn from an independent
                           Gaussian fitted to its training latents (the independent-priors
                           ablation; for the VAE, close to the unimodal VAE's own N(0, I) prior)
                  energy<w>  pc with coherence guidance of weight w (e.g. energy10) by the
                           sbm_energy run `energy` (jaxcv/multimodal/energy.py); it draws the
                           same random numbers as pc, so energy0 is pc exactly
  energy          the sbm_energy run of the energy<w> variants
  seed, batch_size

Metrics, per variant V:
  V/coherence_k{k}        conditional coherence given the first k modalities: the accuracy of
                          each generated modality's classifier against the tuple's label,
                          averaged over the M - k generated modalities (k = 1..M-1)
  V/coherence_last_k{k}   the same for the last modality only (the paper's figures)
  V/uncond_all_agree      unconditional samples whose M predicted digits all agree (MoPoE)
  V/fid_proxy_m{j}, V/fid_proxy  Frechet distance between unconditional samples and real test
                          images of modality j in its classifier's penultimate features (not
                          Inception: 'FID-proxy', not comparable to paper FIDs), and the mean
plus recon/accuracy and recon/fid_proxy (the classifier on the autoencoders' reconstructions:
the ceiling of coherence and quality) and real/accuracy_m{j}
(each classifier on real test images: coherence of the ground truth).
Artefacts: coherence.json, coherence.png (coherence against k) and samples_<variant>.png.

`reconstruction` (on a unimodal_ae run): test mse and the mean latent std; split, max_examples.
"""

from __future__ import annotations

import logging

import jax
import jax.numpy as jnp
import numpy as np

from jaxcv.data import load_dataset
from jaxcv.data.augment import to_float
from jaxcv.diffusion.fid import frechet_distance
from jaxcv.errors import ConfigError
from jaxcv.evaluators.artefacts import new_figure
from jaxcv.evaluators.base import register
from jaxcv.multimodal import polymnist
from jaxcv.multimodal.energy import pair_guidance
from jaxcv.multimodal.sde import pc_sample

log = logging.getLogger(__name__)
VARIANTS = ('pc', 'em', 'quirk', 'indep')


def _eval_data(eval_config, config):
  data = load_dataset(eval_config.get('dataset') or config.data.name,
                      eval_config.get('split', 'test'), config.data.data_dir)
  n = eval_config.get('max_examples', 1000)
  if n and n < len(data):
    data = data.subset(np.linspace(0, len(data) - 1, n).astype(int))
  return data


def coherence(predictions: np.ndarray, labels: np.ndarray) -> float:
  """Share of predicted digits equal to the labels (predictions [N] or [N, J] against [N])."""
  predictions = np.asarray(predictions)
  labels = np.asarray(labels).reshape((-1,) + (1,) * (predictions.ndim - 1))
  return float(np.mean(predictions == labels))


def all_agree(predictions: np.ndarray) -> float:
  """Share of rows of predictions [N, M] whose M entries are all equal."""
  predictions = np.asarray(predictions)
  return float(np.mean(np.all(predictions == predictions[:, :1], axis=1)))


def fid_proxy(features_a: np.ndarray, features_b: np.ndarray) -> float:
  """Frechet distance of Gaussians fitted to two feature sets (jaxcv.diffusion.fid)."""
  features = [np.asarray(f, np.float64) for f in (features_a, features_b)]
  if not all(np.isfinite(f).all() for f in features):
    log.warning('FID proxy: non-finite features (diverged samples); reporting nan')
    return float('nan')
  stats = [(f.mean(0), np.cov(f, rowvar=False)) for f in features]
  return frechet_distance(*stats[0], *stats[1])


class ModalityClassifiers:
  """One digit classifier per modality, from classifier runs (jaxcv.inference.load_run)."""

  def __init__(self, paths: str, num_modalities: int):
    from jaxcv import inference  # pylint: disable=import-outside-toplevel
    runs = [p.strip() for p in (paths or '').split(';') if p.strip()]
    if len(runs) not in (1, num_modalities):
      raise ConfigError(f'sbm evaluator: {len(runs)} classifier runs for {num_modalities} '
                        "modalities; give one per modality ('run0;run1;...') or one shared")
    classifiers = [inference.load_run(p).classifier() for p in runs]
    self.classifiers = classifiers * (num_modalities if len(runs) == 1 else 1)
    self._fns = [jax.jit(lambda x, c=c: c.features(c.variables, jnp.clip(x, 0.0, 1.0)))
                 for c in self.classifiers]

  def __call__(self, modality: int, images) -> tuple[np.ndarray, np.ndarray]:
    """(predicted digits [N], penultimate features [N, F]) of float images of one modality."""
    logits, features = self._fns[modality](images)
    return np.asarray(jnp.argmax(logits, -1)), np.asarray(features)


@register('sbm')
class SBMEvaluator:

  def __init__(self, eval_config, config, task, mesh, artefacts=None):
    del mesh
    if not hasattr(task, 'score_fn'):
      raise ConfigError("the 'sbm' evaluator measures an sbm_score run")
    self.task, self.artefacts = task, artefacts
    self.m = task.num_modalities
    self.data = _eval_data(eval_config, config)
    self.images = np.asarray(to_float(self.data.images))
    self.labels = np.asarray(self.data.labels)
    self.classify = ModalityClassifiers(eval_config.get('classifiers', ''), self.m)
    self.num_uncond = eval_config.get('num_unconditional', 1000)
    self.batch = eval_config.get('batch_size', 500)
    self.seed = eval_config.get('seed', 0)
    self.sampler = dict(num_steps=eval_config.get('num_steps', 100),
                        snr=eval_config.get('snr', 0.16),
                        eps_sample=eval_config.get('eps_sample', 1e-3))
    self.variants = [v.strip() for v in eval_config.get('variants', ','.join(VARIANTS)).split(',')
                     if v.strip()]
    unknown = sorted(v for v in self.variants if v not in VARIANTS and energy_weight(v) is None)
    if unknown:
      raise ConfigError(f'sbm evaluator: unknown variants {unknown}; known: {VARIANTS} and '
                        'energy<weight>')
    self.energy = None
    if any(energy_weight(v) is not None for v in self.variants):
      self.energy = load_energy(eval_config.get('energy', ''))
    self._jitted = {}

  # --- generation ---------------------------------------------------------------------------
  def _sampler(self, variant: str):
    if variant not in self._jitted:
      task, opts = self.task, self.sampler

      def generate(variables, rng, z_obs, observed):
        if variant == 'indep':
          fresh = jax.random.normal(rng, z_obs.shape)
          x = jnp.where(observed, z_obs, fresh)
        else:
          weight = energy_weight(variant)
          guidance = None if weight is None else pair_guidance(
              self.energy.task.energy_fn(self.energy.variables), weight, task.latent_dims,
              observed)
          x = pc_sample(task.score_fn(variables), task.sde, rng, z_obs.shape,
                        corrector=variant != 'em', observed=observed, z_obs=z_obs,
                        compat_official_noise_obs=variant == 'quirk', guidance=guidance,
                        **opts)
        return task.decode(task.unstandardize(variables, x))
      self._jitted[variant] = jax.jit(generate)
    return self._jitted[variant]

  def generate(self, variables, variant: str, z_obs: np.ndarray, observed: np.ndarray,
               rng) -> list[np.ndarray]:
    """M lists of generated images [N, H, W, 3] (observed modalities decoded from z_obs)."""
    fn, out = self._sampler(variant), []
    for i in range(0, len(z_obs), self.batch):
      images = fn(variables, jax.random.fold_in(rng, i), jnp.asarray(z_obs[i:i + self.batch]),
                  jnp.asarray(observed))
      out.append([np.asarray(x) for x in images])
    return [np.concatenate([o[j] for o in out]) for j in range(self.m)]

  def observed_mask(self, k: int) -> np.ndarray:
    mask = np.zeros(self.task.latent_size, bool)
    for s in self.task.modality_slices()[:k]:
      mask[s] = True
    return mask

  # --- measuring ----------------------------------------------------------------------------
  def run(self, variables):
    variables = jax.device_get(variables)
    if self.energy is not None:
      check_same_latents(self.energy, variables)
    encode = jax.jit(self.task.predict_fns()['encode'])
    z = np.concatenate([np.asarray(encode(variables, self.images[i:i + self.batch]))
                        for i in range(0, len(self.images), self.batch)])
    real = [self.classify(j, x) for j, x in enumerate(polymnist.split_modalities(self.images,
                                                                                 self.m))]
    results = {f'real/accuracy_m{j}': coherence(p, self.labels) for j, (p, _) in enumerate(real)}
    recon = self.generate(variables, 'indep', z, np.ones(z.shape[-1], bool),
                          jax.random.key(self.seed))
    classified = [self.classify(j, x) for j, x in enumerate(recon)]
    results['recon/accuracy'] = coherence(np.stack([p for p, _ in classified], 1), self.labels)
    results['recon/fid_proxy'] = float(np.mean([fid_proxy(f, real[j][1])
                                                for j, (_, f) in enumerate(classified)]))
    curves, grids = {}, {}
    for variant in self.variants:
      # Guided variants draw pc's random numbers: their difference from pc is the guidance.
      base = 'pc' if energy_weight(variant) is not None else variant
      rng = jax.random.fold_in(jax.random.key(self.seed), VARIANTS.index(base))
      curve = []
      for k in range(1, self.m):
        images = self.generate(variables, variant, z, self.observed_mask(k),
                               jax.random.fold_in(rng, k))
        preds = np.stack([self.classify(j, images[j])[0] for j in range(k, self.m)], 1)
        results[f'{variant}/coherence_k{k}'] = coherence(preds, self.labels)
        results[f'{variant}/coherence_last_k{k}'] = coherence(preds[:, -1], self.labels)
        curve.append(results[f'{variant}/coherence_k{k}'])
        if k == 1:
          grids[variant] = [images[j][:8] for j in range(self.m)]
      curves[variant] = curve
      n = self.num_uncond
      z_none = np.zeros((n, z.shape[-1]), np.float32)
      images = self.generate(variables, variant, z_none, np.zeros(z.shape[-1], bool),
                             jax.random.fold_in(rng, 0))
      classified = [self.classify(j, images[j]) for j in range(self.m)]
      results[f'{variant}/uncond_all_agree'] = all_agree(np.stack([p for p, _ in classified], 1))
      fids = [fid_proxy(f, real[j][1]) for j, (_, f) in enumerate(classified)]
      for j, value in enumerate(fids):
        results[f'{variant}/fid_proxy_m{j}'] = value
      results[f'{variant}/fid_proxy'] = float(np.mean(fids))
      grids[variant + '_uncond'] = [images[j][:8] for j in range(self.m)]
    self._write(results, curves, grids)
    yield from results.items()

  def _write(self, results, curves, grids):
    if self.artefacts is None or not self.artefacts.enabled:
      return
    self.artefacts.json('coherence.json', {'metrics': results, 'curves': curves,
                                           'num_modalities': self.m,
                                           'examples': len(self.labels)})
    fig = new_figure(figsize=(5, 3.5))
    ax = fig.add_subplot(1, 1, 1)
    for variant, curve in curves.items():
      ax.plot(range(1, self.m), curve, marker='o', label=variant)
    ax.axhline(0.1, color='gray', ls=':', label='chance')
    ax.set_xlabel('observed modalities k')
    ax.set_ylabel('conditional coherence')
    ax.set_ylim(0, 1)
    ax.legend(fontsize=8)
    fig.tight_layout()
    self.artefacts.figure('coherence.png', fig)
    truth = [x[:8] for x in polymnist.split_modalities(self.images, self.m)]
    for variant in self.variants:
      fig = sample_grid_figure({'data': truth, f'{variant}: given m0': grids[variant],
                                f'{variant}: unconditional': grids[variant + '_uncond']})
      self.artefacts.figure(f'samples_{variant}.png', fig)


def energy_weight(variant: str):
  """The guidance weight of an 'energy<w>' variant (energy10 -> 10.0), else None."""
  if not variant.startswith('energy'):
    return None
  try:
    return float(variant[len('energy'):])
  except ValueError:
    return None


def load_energy(path: str):
  """The sbm_energy run of the guided variants (jaxcv.inference.load_run)."""
  from jaxcv import inference  # pylint: disable=import-outside-toplevel
  if not path:
    raise ConfigError("sbm evaluator: the energy<w> variants need `energy`, an sbm_energy run")
  run = inference.load_run(path)
  if run.config.task != 'sbm_energy':
    raise ConfigError(f'sbm evaluator: energy={path} is a {run.config.task!r} run, not an '
                      'sbm_energy one')
  return run


def check_same_latents(energy_run, variables) -> None:
  """The energy must live in the score model's standardised latent space."""
  ours, theirs = variables['latent_stats'], energy_run.variables['latent_stats']
  if not all(np.allclose(np.asarray(ours[k]), np.asarray(theirs[k]), rtol=1e-4, atol=1e-5)
             for k in ('mean', 'std')):
    raise ConfigError(f'sbm evaluator: the energy run {energy_run.run_dir} standardises other '
                      'latents than the score model (other encoders or training data)')


def tile(images_by_modality: list[np.ndarray]) -> np.ndarray:
  """M arrays [n, H, W, 3] -> one image [M * H, n * W, 3] (modalities as rows)."""
  rows = [np.concatenate(list(np.clip(x, 0, 1)), axis=1) for x in images_by_modality]
  return np.concatenate(rows, axis=0)


def sample_grid_figure(panels: dict):
  """A figure with one tiled panel per entry (title -> M arrays [n, H, W, 3])."""
  fig = new_figure(figsize=(3.2 * len(panels), 0.5 * len(next(iter(panels.values()))) + 0.8))
  for i, (title, images) in enumerate(panels.items()):
    ax = fig.add_subplot(1, len(panels), i + 1)
    ax.imshow(tile(images))
    ax.set_title(title, fontsize=8)
    ax.axis('off')
  fig.tight_layout()
  return fig


@register('reconstruction')
class ReconstructionEvaluator:

  def __init__(self, eval_config, config, task, mesh):
    del mesh
    data = _eval_data(eval_config, config)
    self.images = jnp.asarray(to_float(data.images))
    self.fns = task.predict_fns()
    if 'reconstruct' not in self.fns:
      raise ConfigError("the 'reconstruction' evaluator needs a task with 'reconstruct'")
    self._fn = jax.jit(lambda v, x: (self.fns['reconstruct'](v, x), self.fns['encode'](v, x)))

  def run(self, variables):
    x_hat, z = self._fn(variables, self.images)
    yield 'mse', float(jnp.mean(jnp.square(x_hat - self.images)))
    yield 'latent_std', float(jnp.std(z))
