"""Samplers on Gaussian data, where the optimal denoiser is known in closed form.

For x_0 ~ N(μ, Σ) and x_t = α x_0 + σ ε: E[x_0 | x_t] = μ + α Σ (α² Σ + σ² I)⁻¹ (x_t - α μ).
A sampler fed this denoiser must map noise to samples with mean μ and covariance Σ.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxcv import parallel
from jaxcv.diffusion import samplers, schedules
from jaxcv.errors import ConfigError

import ml_collections

MEAN = np.array([1.0, -0.5], np.float32)
COV = np.array([[0.5, 0.3], [0.3, 0.4]], np.float32)
SCHEDULE = schedules.build_schedule('linear', 1000)


def gaussian_denoiser(prediction):
  """The optimal denoiser; `cond` (or the null zeros) shifts the data mean."""
  def denoise(variables, x, t, cond):
    del variables
    alpha, sigma = SCHEDULE.alpha_sigma(t)
    alpha, sigma = alpha[:, None, None], sigma[:, None, None]
    mean = jnp.asarray(MEAN) + (0.0 if cond is None else cond)
    precision = jnp.linalg.inv(alpha ** 2 * COV + sigma ** 2 * jnp.eye(2))
    gain = alpha * jnp.einsum('ij,njk->nik', COV, precision)
    x0 = mean + jnp.einsum('nij,nj->ni', gain, x - alpha[:, 0] * mean)
    eps = (x - alpha[:, 0] * x0) / sigma[:, 0]
    return eps if prediction == 'eps' else alpha[:, 0] * eps - sigma[:, 0] * x0
  return denoise


def moments(samples):
  samples = np.asarray(samples, np.float64)
  return samples.mean(0), np.cov(samples.T)


NOISE = jax.random.normal(jax.random.key(1), (4096, 2))


@pytest.mark.parametrize('method,steps,prediction', [
    ('ddim', 100, 'eps'), ('ddim', 100, 'v'), ('dpm_solver_pp', 20, 'v'), ('ddpm', 250, 'eps')])
def test_recovers_a_gaussian(method, steps, prediction):
  sampler = samplers.Sampler(gaussian_denoiser(prediction), SCHEDULE, method=method,
                             prediction=prediction, max_steps=steps)
  samples = sampler(None, NOISE, num_steps=steps, rng=jax.random.key(2))
  mean, cov = moments(samples)
  np.testing.assert_allclose(mean, MEAN, atol=0.05)
  np.testing.assert_allclose(cov, COV, atol=0.05)


def test_few_steps_are_worse_and_dpm_solver_beats_ddim_there():
  sampler = samplers.Sampler(gaussian_denoiser('eps'), SCHEDULE, max_steps=50)

  def cov_error(method, steps):
    return np.abs(moments(sampler(None, NOISE, method=method, num_steps=steps))[1] - COV).max()
  assert cov_error('ddim', 3) > 2 * cov_error('ddim', 50)
  assert cov_error('dpm_solver_pp', 5) < cov_error('ddim', 5)


def test_ddim_eta_zero_is_deterministic_and_eta_one_is_ddpm():
  sampler = samplers.Sampler(gaussian_denoiser('eps'), SCHEDULE, max_steps=10)
  noise = NOISE[:64]
  ddim = lambda **kw: sampler(None, noise, method='ddim', num_steps=10, **kw)
  a, b = ddim(rng=jax.random.key(0)), ddim(rng=jax.random.key(7))
  np.testing.assert_array_equal(a, b)
  c, d = ddim(eta=1.0, rng=jax.random.key(0)), ddim(eta=1.0, rng=jax.random.key(7))
  assert np.abs(np.asarray(c) - np.asarray(d)).max() > 1e-2  # Stochastic when η > 0.
  ddpm = sampler(None, noise, method='ddpm', num_steps=10, rng=jax.random.key(0))
  np.testing.assert_allclose(ddpm, c, rtol=1e-4, atol=1e-4)


def test_guidance_scale_one_equals_conditional_sampling():
  cond = jnp.tile(jnp.array([[2.0, 1.0]]), (64, 1))
  null = jnp.zeros_like(cond)
  sampler = samplers.Sampler(gaussian_denoiser('eps'), SCHEDULE, max_steps=8)
  for method in samplers.METHODS:
    run = lambda c, **kw: sampler(None, NOISE[:64], c, method=method, num_steps=8, **kw)
    conditional = run(cond)
    guided = run(cond, guidance_scale=1.0, null_cond=null)
    np.testing.assert_allclose(guided, conditional, rtol=1e-5, atol=1e-5)
    unconditional = run(null)
    strong = run(cond, guidance_scale=3.0, null_cond=null)
    # Guidance extrapolates from the unconditional towards (and past) the conditional mean.
    assert np.mean(strong[:, 0]) > np.mean(conditional[:, 0]) > np.mean(unconditional[:, 0]) + 1


def test_one_compilation_serves_every_sampler_and_step_count():
  sampler = samplers.Sampler(gaussian_denoiser('eps'), SCHEDULE, max_steps=20)
  for method in samplers.METHODS:
    for steps in (2, 5, 20):
      out = sampler(None, NOISE[:16], method=method, num_steps=steps)
  assert sampler._run._cache_size() == 1
  # The runtime switch gives what a sampler built for one method gives.
  alone = samplers.Sampler(gaussian_denoiser('eps'), SCHEDULE, method='dpm_solver_pp',
                           max_steps=20)
  np.testing.assert_allclose(alone(None, NOISE[:16], num_steps=20), out, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(
      samplers.sample_loop(gaussian_denoiser('eps'), SCHEDULE, None, NOISE[:16],
                           None, jnp.asarray(samplers.step_table(SCHEDULE, 20, 20)), 20,
                           method='dpm_solver_pp', prediction='eps'), out, rtol=1e-5, atol=1e-5)
  with pytest.raises(ConfigError, match='max_steps'):
    sampler(None, NOISE[:16], num_steps=21)
  with pytest.raises(ConfigError, match='unknown sampler'):
    sampler(None, NOISE[:16], num_steps=2, method='euler')


def test_batch_sharded_over_eight_devices_matches_one():
  mesh8 = parallel.make_mesh(ml_collections.ConfigDict({'data': -1, 'fsdp': 1, 'tensor': 1}))
  mesh1 = parallel.make_mesh(ml_collections.ConfigDict({'data': -1, 'fsdp': 1, 'tensor': 1}),
                             jax.devices()[:1])
  assert mesh8.size == 8
  outs = []
  for mesh in (mesh8, mesh1):
    sampler = samplers.Sampler(gaussian_denoiser('v'), SCHEDULE, method='dpm_solver_pp',
                               prediction='v', max_steps=10, mesh=mesh)
    outs.append(sampler(None, NOISE[:64], num_steps=10))
  assert len(outs[0].sharding.device_set) == 8
  np.testing.assert_allclose(outs[0], outs[1], rtol=1e-5, atol=1e-5)
  with pytest.raises(ConfigError, match='divisible'):
    samplers.Sampler(gaussian_denoiser('v'), SCHEDULE, mesh=mesh8)(None, NOISE[:12], num_steps=2)
