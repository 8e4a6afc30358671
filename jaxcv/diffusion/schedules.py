"""Discrete-time noise schedules (DDPM, Ho et al. 2020) and the ε / v parameterisations.

A schedule is the table ᾱ_t (alphas_cumprod) for t = 0..T-1; x_t = √ᾱ_t x_0 + √(1-ᾱ_t) ε.
  - 'linear': β_t linear in t from 1e-4 to 0.02 (Ho et al. 2020), ᾱ_t = Π_{s<=t} (1 - β_s).
  - 'scaled_linear': √β_t linear from √0.00085 to √0.012 (Stable Diffusion's latent schedule).
  - 'cosine': ᾱ_t = f(t)/f(0), f(t) = cos²(((t/T + s)/(1 + s)) π/2), s = 0.008, with β_t
    clipped at 0.999 (Nichol & Dhariwal 2021).
The timestep index -1 stands for clean data (ᾱ = 1): samplers step to it last.

Parameterisations (Salimans & Ho 2022 for v): the model predicts ε, or v = α ε - σ x_0 with
α = √ᾱ_t, σ = √(1-ᾱ_t); `split_prediction` turns either into (x_0, ε) estimates.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from jaxcv.errors import ConfigError

SCHEDULES = ('linear', 'scaled_linear', 'cosine')
PREDICTIONS = ('eps', 'v')
SPACINGS = ('trailing', 'linspace', 'leading')


@dataclasses.dataclass(frozen=True, eq=False)
class NoiseSchedule:
  """ᾱ_t for t = 0..T-1 (float64 on the host; float32 constants inside jitted code)."""
  alphas_cumprod: np.ndarray
  name: str = ''

  @property
  def num_timesteps(self) -> int:
    return len(self.alphas_cumprod)

  def alpha_sigma(self, t: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(√ᾱ_t, √(1-ᾱ_t)) for integer timesteps t (any shape); t = -1 gives (1, 0)."""
    table = jnp.asarray(self.alphas_cumprod, jnp.float32)
    t = jnp.asarray(t, jnp.int32)
    abar = jnp.where(t < 0, 1.0, table[jnp.clip(t, 0, self.num_timesteps - 1)])
    return jnp.sqrt(abar), jnp.sqrt(1.0 - abar)

  def snr(self, t: jax.Array) -> jax.Array:
    alpha, sigma = self.alpha_sigma(t)
    return alpha ** 2 / sigma ** 2


def _expand(coefficient: jax.Array, like: jax.Array) -> jax.Array:
  """Per-example coefficients [N] broadcast against [N, ...] data."""
  return coefficient.reshape(coefficient.shape + (1,) * (like.ndim - coefficient.ndim))


def linear_betas(num_timesteps: int, beta_start: float = 1e-4, beta_end: float = 0.02):
  return np.linspace(beta_start, beta_end, num_timesteps, dtype=np.float64)


def scaled_linear_betas(num_timesteps: int, beta_start: float = 0.00085, beta_end: float = 0.012):
  return np.linspace(beta_start ** 0.5, beta_end ** 0.5, num_timesteps, dtype=np.float64) ** 2


def cosine_alphas_cumprod(num_timesteps: int, s: float = 0.008, max_beta: float = 0.999):
  steps = np.arange(num_timesteps + 1, dtype=np.float64) / num_timesteps
  f = np.cos((steps + s) / (1 + s) * np.pi / 2) ** 2
  betas = np.minimum(1 - f[1:] / f[:-1], max_beta)  # The clip keeps ᾱ at t = T-1 above zero.
  return np.cumprod(1 - betas)


def build_schedule(name: str, num_timesteps: int = 1000) -> NoiseSchedule:
  if num_timesteps < 2:
    raise ConfigError(f'num_timesteps must be >= 2, got {num_timesteps}')
  if name == 'linear':
    abar = np.cumprod(1 - linear_betas(num_timesteps))
  elif name == 'scaled_linear':
    abar = np.cumprod(1 - scaled_linear_betas(num_timesteps))
  elif name == 'cosine':
    abar = cosine_alphas_cumprod(num_timesteps)
  else:
    raise ConfigError(f'unknown noise schedule {name!r}; known: {", ".join(SCHEDULES)}')
  return NoiseSchedule(abar, name)


def add_noise(schedule: NoiseSchedule, x0: jax.Array, noise: jax.Array, t: jax.Array):
  """x_t = √ᾱ_t x_0 + √(1-ᾱ_t) ε, with one timestep per example."""
  alpha, sigma = schedule.alpha_sigma(t)
  return _expand(alpha, x0) * x0 + _expand(sigma, x0) * noise


def training_target(schedule: NoiseSchedule, x0, noise, t, prediction: str):
  """What the network regresses: ε, or v = α ε - σ x_0."""
  if prediction == 'eps':
    return noise
  if prediction == 'v':
    alpha, sigma = schedule.alpha_sigma(t)
    return _expand(alpha, x0) * noise - _expand(sigma, x0) * x0
  raise ConfigError(f'unknown prediction {prediction!r}; known: {", ".join(PREDICTIONS)}')


def split_prediction(schedule: NoiseSchedule, model_output, x_t, t, prediction: str):
  """(x_0, ε) estimates from the network output at (x_t, t)."""
  alpha, sigma = schedule.alpha_sigma(t)
  alpha, sigma = _expand(alpha, x_t), _expand(sigma, x_t)
  if prediction == 'eps':
    eps = model_output
    return (x_t - sigma * eps) / alpha, eps
  if prediction == 'v':
    # With α² + σ² = 1: x_0 = α x_t - σ v and ε = σ x_t + α v.
    return alpha * x_t - sigma * model_output, sigma * x_t + alpha * model_output
  raise ConfigError(f'unknown prediction {prediction!r}; known: {", ".join(PREDICTIONS)}')


def sampling_timesteps(num_steps: int, num_timesteps: int, spacing: str = 'trailing'):
  """The model's timesteps for an n-step sampler, from noisiest to cleanest (int32 [n]).

  'trailing' (Lin et al. 2024, "Common diffusion noise schedules and sample steps are flawed")
  starts at T-1 and spaces steps T/n apart, so even a 1-step sampler starts from (nearly) pure
  noise: t_i = round(T - i T/n) - 1. 'linspace' spaces n points evenly over [0, T-1];
  'leading' (the DDIM paper's) uses t_i = (n-1-i) (T//n) and never starts at T-1.
  """
  if not 1 <= num_steps <= num_timesteps:
    raise ConfigError(f'num_steps must be in [1, {num_timesteps}], got {num_steps}')
  if spacing == 'trailing':
    steps = np.round(np.arange(num_timesteps, 0, -num_timesteps / num_steps)) - 1
  elif spacing == 'linspace':
    steps = np.round(np.linspace(0, num_timesteps - 1, num_steps))[::-1]
  elif spacing == 'leading':
    steps = (np.arange(num_steps) * (num_timesteps // num_steps))[::-1]
  else:
    raise ConfigError(f'unknown timestep spacing {spacing!r}; known: {", ".join(SPACINGS)}')
  return steps.astype(np.int32)
