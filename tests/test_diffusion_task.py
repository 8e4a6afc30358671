"""The diffusion task in the single loop: learning, sharding equivalence, latent and
super-resolution modes, text conditioning, and the width sweep's outputs.

Training runs use a tiny stand-in denoiser with the UNet's call signature (compiling the real
UNet takes minutes on a CPU); `test_real_unet_is_wired_in` traces the real one.
"""

import json
import math
from typing import Any, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxcv import checkpoint as checkpoint_lib
from jaxcv import config as config_lib
from jaxcv import parallel
from jaxcv import sweep
from jaxcv import train
from jaxcv.data import open_train_data, registry
from jaxcv.diffusion import conditioning, scaling, schedules
from jaxcv.errors import ConfigError
from jaxcv.tasks import build_task
from jaxcv.tasks import diffusion as diffusion_task

from conftest import REPO_ROOT

CONFIG = str(REPO_ROOT / 'configs' / 'ldm_scaling' / 'cifar10_unet.py')
SYNTHETIC = 'data.name=synthetic:n=256,size=8,classes=4'
SCHEDULE_COSINE = schedules.build_schedule('cosine', 1000)  # The config's default.


class TinyDenoiser(nn.Module):
  """Two convolutions with time and context embeddings added: the UNet's signature, tiny."""
  base_width: int = 8
  in_channels: int = 3
  out_channels: int = 3
  context_dim: Optional[int] = None
  num_groups: int = 4
  num_res_blocks: int = 1
  channel_mult: tuple = (1,)
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, t, context=None, *, train=False):
    assert x.shape[-1] == self.in_channels
    width = self.base_width
    freqs = jnp.exp(-jnp.arange(4) * 2.0)
    angles = t[:, None] / 1000.0 * 10 * freqs
    temb = nn.Dense(width, dtype=self.dtype)(jnp.concatenate([jnp.sin(angles), jnp.cos(angles)],
                                                             -1))
    h = nn.Conv(width, (3, 3), dtype=self.dtype)(x) + temb[:, None, None, :]
    if self.context_dim is not None:
      h = h + nn.Dense(width, dtype=self.dtype)(context.mean(1))[:, None, None, :]
    h = nn.Conv(width, (3, 3), dtype=self.dtype)(nn.silu(h))
    return nn.Conv(self.out_channels, (3, 3), dtype=self.dtype)(nn.silu(h)).astype(jnp.float32)


@pytest.fixture(autouse=True)
def tiny_denoiser(monkeypatch):
  monkeypatch.setitem(diffusion_task.DENOISERS, 'tiny_denoiser', TinyDenoiser)


def tiny(arg='', overrides=()):
  return config_lib.load(
      f'{CONFIG}:width=8,batch=32,ema=0,dtype=float32,steps=10{"," + arg if arg else ""}',
      [SYNTHETIC, 'model.name=tiny_denoiser', 'progress_bar=false', 'plot=false',
       'checkpoint_every_steps=1000', *overrides])


def losses(workdir):
  return [json.loads(line)['train/loss'] for line in open(workdir / 'metrics.jsonl')
          if 'train/loss' in line]


def test_loss_decreases_in_a_tiny_run(tmp_path):
  config = tiny('steps=150,lr=3e-3,warmup=5', ['log_every_steps=10'])
  summary = train.run(config, str(tmp_path), devices=jax.devices()[:1])
  curve = losses(tmp_path)
  assert summary['steps'] == 150 and len(curve) == 15
  assert np.mean(curve[-3:]) < 0.8 * curve[0], curve


def test_fsdp8_member_matches_fsdp1(tmp_path):
  sharded = tiny('fsdp=8', ['model.name=tiny_denoiser'])
  _, info = open_train_data(sharded)
  abstract = jax.eval_shape(build_task(sharded, info).init_variables, jax.random.key(0))[0]
  specs = parallel.state_shardings(abstract, sharded.param_sharding,
                                   parallel.make_mesh(sharded.mesh))
  assert any('fsdp' in str(s.spec) for s in jax.tree.leaves(specs))  # The rules really shard.
  member = [SYNTHETIC, 'model.name=tiny_denoiser', 'progress_bar=false', 'plot=false',
            'log_every_steps=5']
  spec = CONFIG + ':steps=6,batch=32,ema=0.9,dtype=float32'
  train.run(scaling.member_config(spec, 8, member), str(tmp_path / 'one' / 'w8'),
            devices=jax.devices()[:1])
  train.run(scaling.member_config(spec + ',fsdp=8', 8, member), str(tmp_path / 'eight' / 'w8'))
  raw_one, _ = checkpoint_lib.load_pretrained(str(tmp_path / 'one' / 'w8'))
  raw_eight, _ = checkpoint_lib.load_pretrained(str(tmp_path / 'eight' / 'w8'))
  for key in ('params', 'ema_params'):
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=2e-4, atol=2e-5),
                 raw_one[key], raw_eight[key])
  # The cost row's record: FLOPs grow with width; normalised to the largest; compute = cost x
  # steps.
  metrics = scaling.width_costs(str(tmp_path / 'eight'), spec, {8: str(tmp_path / 'eight' / 'w8')},
                                reference_width=16, overrides=member[:2])
  member = json.load(open(tmp_path / 'eight' / 'sweep.json'))['members'][0]
  flops16 = scaling.forward_flops(
      scaling.member_config(CONFIG, 16, [SYNTHETIC, 'model.name=tiny_denoiser']))
  assert 2.5 < flops16 / member['flops'] < 4.5  # ~quadratic in width.
  assert member['normalized_cost'] == pytest.approx(member['flops'] / flops16)
  assert member['training_compute'] == pytest.approx(6 * member['normalized_cost'])
  assert metrics['w8/training_compute'] == pytest.approx(member['training_compute'])
  assert (tmp_path / 'eight' / 'sweep.md').read_text().count('\n| ') == 2


def _fake_autoencoder_run(path):
  """A randomly initialised tiny KL autoencoder saved as a jaxcv run (f = 2, 2 latent channels)."""
  from jaxcv.models.autoencoder import KLAutoencoder
  kwargs = dict(channels=8, channel_mult=[1, 2], num_res_blocks=1, latent_channels=2,
                num_groups=4)
  model = KLAutoencoder(**{k: tuple(v) if isinstance(v, list) else v for k, v in kwargs.items()})
  params = model.init(jax.random.key(0), jnp.zeros((1, 8, 8, 3)))['params']
  checkpointer = checkpoint_lib.Checkpointer(checkpoint_lib.checkpoint_dir(str(path)),
                                             async_save=False)
  checkpointer.save(1, {'params': params}, {'step': 1})
  checkpointer.close()
  (path / 'config.json').write_text(json.dumps({'model': {'name': 'kl_autoencoder',
                                                          'kwargs': kwargs}}))
  return params


def test_latent_super_resolution_with_a_frozen_autoencoder(tmp_path):
  ae_params = _fake_autoencoder_run(tmp_path / 'ae')
  config = tiny('steps=3,prediction=eps,schedule=linear', [
      f'diffusion.autoencoder_checkpoint={tmp_path / "ae"}', 'diffusion.latent_scale=0.5',
      'diffusion.image_condition=low_res', 'diffusion.low_res_factor=2', 'ema_decay=0.5'])
  summary = train.run(config, str(tmp_path / 'run'))
  assert np.isfinite(summary['train/loss'])
  raw, _ = checkpoint_lib.load_pretrained(str(tmp_path / 'run'))
  jax.tree.map(np.testing.assert_array_equal, raw['extra']['autoencoder'], ae_params)  # Frozen.
  _, info = open_train_data(config)
  task = build_task(config, info)
  assert task.sample_shape == (4, 4, 2)
  assert raw['params']['unet']['Conv_0']['kernel'].shape[2] == 4  # Latent + condition latent.
  images = jax.random.uniform(jax.random.key(1), (8, 8, 8, 3))
  out = task.generate({'params': raw['params']}, jax.random.key(2), images=images, num_steps=3)
  assert out.shape == (8, 8, 8, 3) and float(out.min()) >= 0 and float(out.max()) <= 1


def test_text_conditioning_from_an_embedding_table(tmp_path):
  table = np.random.default_rng(0).normal(size=(4, 3, 6)).astype(np.float32)
  np.save(tmp_path / 'text.npy', table)
  config = tiny('steps=2', ['diffusion.conditioning=text',
                            f'diffusion.text_embeddings={tmp_path / "text.npy"}'])
  train.run(config, str(tmp_path / 'run'))
  raw, _ = checkpoint_lib.load_pretrained(str(tmp_path / 'run'))
  assert 'class_embedding' not in raw['params']
  assert raw['params']['unet']['Dense_1']['kernel'].shape[0] == 6  # Context width D.
  bad = tiny('steps=2', ['diffusion.conditioning=text'])
  with pytest.raises(ConfigError, match='text_embeddings'):
    train.run(bad, str(tmp_path / 'bad'))


def test_conditioning_helpers():
  labels = jnp.arange(20000) % 10
  dropped = conditioning.drop_labels(jax.random.key(0), labels, 0.1, 10)
  assert 0.09 < float(jnp.mean(dropped == 10)) < 0.11
  assert bool(jnp.all((dropped == labels) | (dropped == 10)))
  flat = jnp.full((2, 8, 8, 3), 0.3)
  np.testing.assert_allclose(conditioning.low_res_condition(flat, 4), flat, atol=1e-6)
  ramp = jnp.tile(jnp.linspace(0, 1, 8)[None, :, None, None], (1, 1, 8, 3))
  low = conditioning.low_res_condition(ramp, 4)
  assert low.shape == ramp.shape and 0 < float(jnp.abs(low - ramp).max()) < 0.3
  embed = conditioning.ClassEmbedding(num_classes=10, context_dim=5, seq_len=2)
  params = embed.init(jax.random.key(0), labels[:3])
  assert embed.apply(params, labels[:3]).shape == (3, 2, 5)
  assert params['params']['table']['embedding'].shape == (11, 10)  # Null class included.


def test_real_unet_is_wired_in():
  config = tiny('dtype=bfloat16,mult=1-2', ['model.name=small_unet'])
  config.unlock()
  config.model.kwargs.update(num_heads=2, num_groups=4)
  _, info = open_train_data(config)
  task = build_task(config, info)
  assert task.model.unet.dtype == jnp.bfloat16 and task.model.unet.context_dim == 128
  params, _ = jax.eval_shape(task.init_variables, jax.random.key(0))
  assert params['unet']['conv_in']['kernel'].shape == (3, 3, 3, 8)
  assert params['unet']['conv_in']['kernel'].dtype == jnp.float32  # bf16 compute only.
  batch = {'image': jnp.zeros((4, 8, 8, 3)), 'label': jnp.arange(4)}
  loss, _ = jax.eval_shape(task.loss, params, {}, None, batch, jax.random.key(0))
  assert loss.shape == () and loss.dtype == jnp.float32


def test_missing_section_and_bad_values_are_config_errors(tmp_path):
  config = config_lib.load(str(REPO_ROOT / 'tests' / 'configs' / 'tiny.py'), ['task=diffusion'])
  with pytest.raises(ConfigError, match='add_diffusion_config'):
    train.run(config, str(tmp_path / 'a'))
  with pytest.raises(ConfigError, match='prediction'):
    train.run(tiny('prediction=x0'), str(tmp_path / 'b'))
  with pytest.raises(ConfigError, match='not a denoiser'):
    train.run(tiny('', ['model.name=resnet18']), str(tmp_path / 'c'))


# Data for the closed-form denoiser: every value (in [-1, 1]) independent, N(mean, STD^2), the
# mean shifted by the mean of the class context, so that classes differ in their mean only.
STD = 0.2
CLASS_SHIFT = np.array([0.1, -0.1, 0.15, -0.05, 0.0], np.float32)  # 4 classes, then the null.


class GaussianDenoiser(TinyDenoiser):
  """The exact (Bayes-optimal) denoiser of that data: E[x_0 | x_t] = m + a s^2 / (a^2 s^2 +
  sigma^2) (x_t - a m) per value, returned as the v (or eps) the cosine-schedule config trains."""
  prediction: str = 'v'

  @nn.compact
  def __call__(self, x, t, context=None, *, train=False):
    alpha, sigma = SCHEDULE_COSINE.alpha_sigma(t)
    alpha, sigma = alpha[:, None, None, None], sigma[:, None, None, None]
    mean = context.mean(axis=(1, 2))[:, None, None, None]
    x0 = mean + alpha * STD**2 / (alpha**2 * STD**2 + sigma**2) * (x - alpha * mean)
    eps = (x - alpha * x0) / sigma
    return eps if self.prediction == 'eps' else alpha * eps - sigma * x0


def test_sample_predict_fn_draws_the_data_distribution_and_guides_the_mean(monkeypatch):
  """'sample' is what the 'generative' evaluator calls: (variables, rng, labels, **kwargs). With
  the exact denoiser its samples must have the data's class mean and spread, and guidance scale
  w must move the mean to m_null + w (m_class - m_null), exactly so for Gaussian classes that
  differ in their mean (the denoiser's output is affine in the mean)."""
  monkeypatch.setitem(diffusion_task.DENOISERS, 'gaussian', GaussianDenoiser)
  config = tiny('', ['model.name=gaussian'])
  assert (config.diffusion.schedule, config.diffusion.prediction) == ('cosine', 'v')
  _, info = open_train_data(config)
  task = build_task(config, info)
  params, model_state = task.init_variables(jax.random.key(0))
  table = params['class_embedding']['table']['embedding']
  params['class_embedding']['table']['embedding'] = jnp.broadcast_to(
      jnp.asarray(CLASS_SHIFT)[:, None], table.shape)  # Row c's mean is CLASS_SHIFT[c].
  sample = task.predict_fns()['sample']
  labels = jnp.arange(256) % info.num_classes
  # Enough steps that the discretisation error is small (the spread is 7% low at DDIM 50).
  for method, steps, guidance in (('ddim', 250, None), ('dpm_solver_pp', 50, 2.0)):
    images = np.asarray(sample({'params': params, **model_state}, jax.random.key(1), labels,
                               method=method, num_steps=steps, guidance_scale=guidance))
    assert images.shape == (256, 8, 8, 3)
    values = images * 2 - 1  # Back to the denoiser's [-1, 1].
    for c in range(info.num_classes):
      shift = CLASS_SHIFT[c] if guidance is None else (
          CLASS_SHIFT[-1] + guidance * (CLASS_SHIFT[c] - CLASS_SHIFT[-1]))
      of_class = values[np.asarray(labels) == c]
      assert of_class.mean() == pytest.approx(shift, abs=0.01), (method, c)
      assert of_class.std() == pytest.approx(STD, rel=0.03), (method, c)


def test_the_scaling_table_trains_widths_costs_them_and_sweeps_samplers(tmp_path):
  """configs/ldm_scaling/table.py at runlocal (tiny denoiser, synthetic data): two widths, their
  cost record, and the sampling sweep in the classifier row's feature space."""
  workdir = tmp_path / 'ldm'
  spec = (f'{REPO_ROOT / "configs" / "ldm_scaling" / "table.py"}:runlocal,widths=8;16,'
          'samples=16,dataset=synthetic:n=256;size=8;classes=4,denoiser=tiny_denoiser')
  records = sweep.run_table(spec, str(workdir))
  assert {r['name']: r['status'] for r in records} == dict.fromkeys(
      ['classifier', 'w8', 'w16', 'costs', 'sampling'], 'ok'), records
  costs = json.loads((workdir / 'costs' / 'summary.json').read_text())
  assert costs['w16/normalized_cost'] == pytest.approx(1.0)
  assert 0 < costs['w8/normalized_cost'] < 1
  results = json.loads((workdir / 'sampling' / 'results.json').read_text())
  assert {p['width'] for p in results['points']} == {8, 16}
  best = json.loads((workdir / 'sampling' / 'summary.json').read_text())
  assert all(math.isfinite(v) for v in best.values()) and len(best) == 4 + 3  # + noise, real.
  # The proxy's noise: seed 0 repeats the grid's point at the curve setting exactly (same noise,
  # same labels); seed 1 draws other noise, so another FID.
  noise = results['proxy_noise']
  assert (noise['sampler'], noise['steps'], noise['guidance']) == ('ddim', 2, 2.0)
  for width in (8, 16):
    by_seed = {p['seed']: p['fid'] for p in noise['points'] if p['width'] == width}
    grid = [p['fid'] for p in results['points']
            if (p['width'], p['sampler'], p['steps'], p['guidance']) == (width, 'ddim', 2, 2.0)]
    assert sorted(by_seed) == [0, 1] and by_seed[0] == pytest.approx(grid[0], rel=1e-6)
    assert by_seed[1] != pytest.approx(by_seed[0], rel=1e-6)
  assert math.isfinite(noise['real']['fid']) and noise['real']['num_samples'] == 16
  assert 'Noise of the quality proxy' in (workdir / 'sampling' / 'results.md').read_text()


def test_generated_split_samples_each_class_of_a_diffusion_run(tmp_path, monkeypatch):
  """BROAD's synthetic shift `generated(run=...):BASE`: per_class samples of every class,
  class-major labels, resized to the base's image size, uint8; deterministic per seed."""
  monkeypatch.setenv('JAXCV_CACHE_DIR', str(tmp_path / 'cache'))
  train.run(tiny('steps=4'), str(tmp_path / 'gen'), devices=jax.devices()[:1])
  spec = f'generated(run={tmp_path / "gen"},per_class=3,steps=2,batch_size=8' + '{}):{}'
  base = 'synthetic:n=64,size=12,classes=4'
  data = registry.load_dataset(spec.format('', base), 'test')
  assert data.images.shape == (12, 12, 12, 3) and data.images.dtype == np.uint8
  np.testing.assert_array_equal(data.labels, np.repeat(np.arange(4), 3))
  assert data.images.std() > 0
  again = registry.load_dataset(spec.format('', base), 'test')
  np.testing.assert_array_equal(again.images, data.images)
  other = registry.load_dataset(spec.format(',seed=1', base), 'test')
  assert not np.array_equal(other.images, data.images)
  with pytest.raises(ConfigError, match='has 4 classes'):
    registry.load_dataset(spec.format('', 'synthetic:n=64,size=12,classes=3'), 'test')
