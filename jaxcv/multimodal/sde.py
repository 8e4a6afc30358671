"""The continuous VP-SDE of score-based generative modelling (Song et al. 2021), as SBM uses it.

  dx = -1/2 beta(t) x dt + sqrt(beta(t)) dW,   beta(t) = beta0 + t (beta1 - beta0),  t in [0, 1]
  marginal x_t = a_t x_0 + sigma_t eps,  log a_t = -1/4 t^2 (beta1 - beta0) - 1/2 t beta0,
  sigma_t = sqrt(1 - a_t^2).

Written by hand: no JAX library offers the VP-SDE's predictor-corrector sampler with
replacement conditioning (diffrax integrates SDEs but has no Langevin corrector or inpainting).
Samplers run as a `lax.scan` over the time grid. `score_fn(x, t)` maps x [B, D] and t [B] to the
score [B, D].
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Optional

import jax
import jax.numpy as jnp

ScoreFn = Callable[[jax.Array, jax.Array], jax.Array]
Guidance = Callable[[jax.Array, jax.Array, jax.Array], jax.Array]  # (x, t, key) -> score term
MAX_LANGEVIN_STEP = 1.0


@dataclasses.dataclass(frozen=True)
class VPSDE:
  beta0: float = 0.1
  beta1: float = 20.0

  def beta(self, t):
    return self.beta0 + t * (self.beta1 - self.beta0)

  def marginal(self, t):
    """(a_t, sigma_t) of x_t | x_0 = a_t x_0 + sigma_t eps, in closed form."""
    log_a = -0.25 * t ** 2 * (self.beta1 - self.beta0) - 0.5 * t * self.beta0
    a = jnp.exp(log_a)
    return a, jnp.sqrt(-jnp.expm1(2.0 * log_a))  # sqrt(1 - a^2), accurate near t = 0.

  def drift_diffusion(self, x, t):
    """(f(x, t), g(t)) of the forward SDE."""
    beta = self.beta(t)[:, None]
    return -0.5 * beta * x, jnp.sqrt(beta)


def dsm_loss(eps_fn, sde: VPSDE, x0, rng, eps_train: float = 1e-5):
  """Denoising score matching, mean over dims of (s(x_t, t) sigma_t + eps)^2, for a network
  that returns eps_fn(x_t, t) = s * sigma_t (the scale_by_sigma form)."""
  t_rng, n_rng = jax.random.split(rng)
  t = jax.random.uniform(t_rng, (x0.shape[0],), minval=eps_train, maxval=1.0)
  noise = jax.random.normal(n_rng, x0.shape)
  a, sigma = sde.marginal(t)
  xt = a[:, None] * x0 + sigma[:, None] * noise
  return jnp.mean(jnp.square(eps_fn(xt, t) + noise))


def noised_observation(sde: VPSDE, z_obs, t, rng, compat_official_noise_obs: bool = False):
  """The observed latents at time t: a_t z + sigma_t eps (fresh noise), or the official code's
  a_t z + sigma_t z when `compat_official_noise_obs` (it reuses z where noise belongs)."""
  a, sigma = sde.marginal(t)
  noise = z_obs if compat_official_noise_obs else jax.random.normal(rng, z_obs.shape)
  return a[:, None] * z_obs + sigma[:, None] * noise


def pc_sample(score_fn: ScoreFn, sde: VPSDE, rng, shape, *, num_steps: int = 100,
              corrector: bool = True, snr: float = 0.16, eps_sample: float = 1e-3,
              observed: Optional[jax.Array] = None, z_obs: Optional[jax.Array] = None,
              compat_official_noise_obs: bool = False,
              guidance: Optional[Guidance] = None) -> jax.Array:
  """Predictor-corrector sampling of x [B, D] from t = 1 to eps_sample.

  Predictor: Euler-Maruyama on the reverse SDE; corrector: one Langevin step per time step
  (score-sde's LangevinCorrector, step 2 alpha (snr |z| / |s|)^2 with alpha = 1 - beta(t)/N).
  Conditioning by replacement: where `observed` ([D] or [B, D] booleans) is True, the state is
  overwritten by the noised observation `z_obs` before every step, and the clean `z_obs` is
  returned there. The rest is the last predictor step's mean (no noise), as the paper.
  `guidance(x, t, key)`, when given, is added to the score in the corrector and the predictor
  (the same key, so the same draw, in both; e.g. energy.pair_guidance); its key is folded from
  the step's key, so the other draws are those of the unguided sampler.
  """
  times = jnp.linspace(1.0, eps_sample, num_steps)
  dt = (1.0 - eps_sample) / max(num_steps - 1, 1)
  init_rng, rng = jax.random.split(rng)
  x = jax.random.normal(init_rng, shape)
  if observed is None:
    observed = jnp.zeros(shape[-1:], bool)
    z_obs = jnp.zeros(shape)
  observed = jnp.broadcast_to(observed, shape)

  def replace(x, t, key):
    return jnp.where(observed, noised_observation(sde, z_obs, t, key, compat_official_noise_obs),
                     x)

  def guided_score(x, t, key):
    score = score_fn(x, t)
    return score if guidance is None else score + guidance(x, t, key)

  def step(carry, inputs):
    x, _ = carry
    t_scalar, key = inputs
    t = jnp.full((shape[0],), t_scalar)
    obs_key, corr_key, pred_key = jax.random.split(key, 3)
    guide_key = jax.random.fold_in(key, 3)
    x = replace(x, t, obs_key)
    if corrector:
      score = guided_score(x, t, guide_key)
      noise = jax.random.normal(corr_key, shape)
      grad_norm = jnp.linalg.norm(score.reshape(shape[0], -1), axis=-1).mean()
      noise_norm = jnp.linalg.norm(noise.reshape(shape[0], -1), axis=-1).mean()
      # score-sde's alpha of the discretised chain; kept positive for very few steps (a coarse
      # grid, beta(t)/N > 1, would make it negative and the noise scale NaN).
      alpha = jnp.clip(1.0 - sde.beta(t_scalar) / num_steps, 1e-3, 1.0)
      # Capped at MAX_LANGEVIN_STEP: a near-zero score (an untrained network) would otherwise
      # make the step, and the sample, blow up. Trained models stay far below it (~ snr^2).
      step_size = jnp.minimum(2.0 * alpha * (snr * noise_norm / grad_norm) ** 2,
                              MAX_LANGEVIN_STEP)
      x = x + step_size * score + jnp.sqrt(2.0 * step_size) * noise
      x = replace(x, t, obs_key)
    f, g = sde.drift_diffusion(x, t)
    score = guided_score(x, t, guide_key)
    x_mean = x - (f - g ** 2 * score) * dt  # Reverse-time Euler-Maruyama, dt > 0 backwards.
    x = x_mean + g * jnp.sqrt(dt) * jax.random.normal(pred_key, shape)
    return (x, x_mean), None

  (_, x_mean), _ = jax.lax.scan(step, (x, x), (times, jax.random.split(rng, num_steps)))
  return jnp.where(observed, z_obs, x_mean)
