"""Noise schedules against their closed forms, and the ε / v parameterisations' identities."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxcv.diffusion import schedules
from jaxcv.errors import ConfigError


def test_linear_schedule_is_the_product_of_one_minus_beta():
  schedule = schedules.build_schedule('linear', 1000)
  t = np.array([0, 1, 10, 500, 999])
  betas = np.linspace(1e-4, 0.02, 1000)
  # Closed form of the log of the product: Σ_{s<=t} log(1 - β_s).
  expected = np.exp([np.log1p(-betas[:k + 1]).sum() for k in t])
  np.testing.assert_allclose(schedule.alphas_cumprod[t], expected, rtol=1e-10)
  assert schedule.alphas_cumprod[0] == pytest.approx(1 - 1e-4)
  assert 2e-5 < schedule.alphas_cumprod[-1] < 1e-4  # Nearly pure noise at T-1 (DDPM's 4.0e-5).


def test_cosine_schedule_matches_cos_squared_until_the_clip():
  T, s = 1000, 0.008
  schedule = schedules.build_schedule('cosine', T)
  t = np.arange(0, 900, 37)
  f = lambda u: np.cos((u / T + s) / (1 + s) * np.pi / 2) ** 2
  np.testing.assert_allclose(schedule.alphas_cumprod[t], f(t + 1) / f(0), rtol=1e-9)
  assert np.all(np.diff(schedule.alphas_cumprod) < 0)
  betas = 1 - schedule.alphas_cumprod[1:] / schedule.alphas_cumprod[:-1]
  assert betas.max() == pytest.approx(0.999)  # The clip binds at the very end only.


def test_scaled_linear_betas_are_squares_of_a_line():
  betas = schedules.scaled_linear_betas(100)
  np.testing.assert_allclose(np.diff(np.sqrt(betas), 2), 0, atol=1e-12)
  assert betas[0] == pytest.approx(0.00085) and betas[-1] == pytest.approx(0.012)


def test_alpha_sigma_at_clean_data_and_snr_decreases():
  schedule = schedules.build_schedule('cosine', 100)
  alpha, sigma = schedule.alpha_sigma(jnp.array([-1, 0, 50, 99]))
  assert alpha[0] == 1 and sigma[0] == 0
  np.testing.assert_allclose(alpha ** 2 + sigma ** 2, 1, rtol=1e-6)
  snr = schedule.snr(jnp.arange(100))
  assert bool(jnp.all(jnp.diff(snr) < 0))


@pytest.mark.parametrize('prediction', ['eps', 'v'])
def test_perfect_prediction_recovers_data_and_noise(prediction):
  schedule = schedules.build_schedule('linear', 1000)
  k1, k2 = jax.random.split(jax.random.key(0))
  x0 = jax.random.normal(k1, (6, 4, 4, 3))
  noise = jax.random.normal(k2, (6, 4, 4, 3))
  t = jnp.array([0, 5, 100, 400, 800, 999])
  x_t = schedules.add_noise(schedule, x0, noise, t)
  target = schedules.training_target(schedule, x0, noise, t, prediction)
  x0_hat, eps_hat = schedules.split_prediction(schedule, target, x_t, t, prediction)
  # ε-prediction divides by √ᾱ_t (tiny at t = 999), so x̂_0 is checked where it is stable.
  keep = slice(None) if prediction == 'v' else slice(0, 5)
  np.testing.assert_allclose(x0_hat[keep], x0[keep], atol=2e-3)
  np.testing.assert_allclose(eps_hat, noise, atol=2e-3)


def test_trailing_spacing_starts_at_the_last_timestep():
  np.testing.assert_array_equal(schedules.sampling_timesteps(4, 1000), [999, 749, 499, 249])
  np.testing.assert_array_equal(schedules.sampling_timesteps(1, 1000), [999])
  np.testing.assert_array_equal(schedules.sampling_timesteps(3, 10, 'linspace'), [9, 4, 0])
  np.testing.assert_array_equal(schedules.sampling_timesteps(4, 1000, 'leading'),
                                [750, 500, 250, 0])
  for n in (2, 3, 7, 50, 1000):
    steps = schedules.sampling_timesteps(n, 1000)
    assert len(steps) == n and steps[0] == 999 and np.all(np.diff(steps) < 0) and steps[-1] >= 0


def test_bad_names_are_config_errors():
  with pytest.raises(ConfigError, match='noise schedule'):
    schedules.build_schedule('quadratic')
  with pytest.raises(ConfigError, match='spacing'):
    schedules.sampling_timesteps(4, 1000, 'random')
  with pytest.raises(ConfigError, match='num_steps'):
    schedules.sampling_timesteps(0, 1000)
