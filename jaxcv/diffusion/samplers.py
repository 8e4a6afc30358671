"""Samplers for discrete-time diffusion models, as jitted loops: DDPM, DDIM (η) and
DPM-Solver++(2M), each with optional classifier-free guidance.

- DDIM (Song et al. 2021): x_s = √ᾱ_s x̂_0 + √(1-ᾱ_s-σ²) ε̂ + σ z with
  σ = η √((1-ᾱ_s)/(1-ᾱ_t)) √(1-ᾱ_t/ᾱ_s); η = 0 is the deterministic ODE sampler.
- DDPM (Ho et al. 2020): ancestral sampling from the posterior q(x_s | x_t, x̂_0) between the
  strided timesteps t > s (for 1000 steps: the original sampler; in general the same as DDIM
  with η = 1, which the tests check).
- DPM-Solver++(2M) (Lu et al. 2022): multistep second-order solver in λ = log(α/σ) on the data
  prediction; first order at the first step and at the last (which lands on clean data, σ = 0).
- Classifier-free guidance (Ho & Salimans 2021): out = u + w (c - u) from one forward pass on the
  doubled batch [conditional; null condition]. Guiding the raw output is the same as guiding ε
  or x̂_0, which are affine in it with shared coefficients.

Timestep spacing is 'trailing' by default (schedules.sampling_timesteps): n steps start at T-1.
One compiled loop serves every sampler, every step count up to `max_steps`, every guidance scale
and every η: they are runtime arguments (the step table is padded, the loop bound is traced and
the update rule is a `lax.switch` after the one network evaluation of each step), which keeps a
sampling sweep to one compilation per (model, batch shape, guided or not). The sample batch is split
over the mesh's data axes (jaxcv.parallel.batch_sharding); parameters stay as they are placed.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from jaxcv import parallel
from jaxcv import specs
from jaxcv.diffusion import schedules as schedules_lib
from jaxcv.errors import ConfigError

METHODS = ('ddim', 'ddpm', 'dpm_solver_pp')

# The step counts each sampler is swept over when a grid names none (Mei et al. 2024's ranges).
DEFAULT_STEPS = {
    'ddim': (2, 3, 4, 6, 8, 10, 15, 20, 30, 50),
    'ddpm': (10, 20, 30, 50),
    'dpm_solver_pp': (2, 3, 4, 6, 8, 10, 15, 20),
}
MAX_STEPS = {'ddim': 50, 'ddpm': 50, 'dpm_solver_pp': 20}  # The paper's ranges per sampler.


def parse_samplers(text: str) -> dict[str, tuple[int, ...]]:
  """'ddim(steps=(2,4,8)),dpm_solver_pp(steps=(4,8)),ddpm' -> {'ddim': (2, 4, 8), ...}: a list of
  sampler specs (jaxcv/specs.py); a sampler without steps gets its DEFAULT_STEPS."""
  result = {}
  for spec in specs.parse_list(text, 'sampler'):
    if spec.name not in DEFAULT_STEPS:
      raise ConfigError(f'unknown sampler {spec.name!r}; known: {", ".join(DEFAULT_STEPS)}')
    steps = specs.bind(spec, {'steps': None}, 'sampler').get('steps', DEFAULT_STEPS[spec.name])
    counts = tuple(steps) if isinstance(steps, (tuple, list)) else (steps,)
    bad = [s for s in counts if not isinstance(s, int) or not 1 <= s <= MAX_STEPS[spec.name]]
    if bad or not counts:
      raise ConfigError(f'{spec.name} steps must be integers in [1, {MAX_STEPS[spec.name]}], '
                        f'got {list(counts)}')
    result[spec.name] = counts
  return result


# (variables, x_t [N, ...], t int32 [N], cond pytree with leading N or None) -> model output.
DenoiseFn = Callable[[Any, jax.Array, jax.Array, Any], jax.Array]


def step_table(schedule: schedules_lib.NoiseSchedule, num_steps: int, length: int,
               spacing: str = 'trailing') -> np.ndarray:
  """int32 [length + 1]: the n timesteps, then -1 (clean data) for the rest of the table."""
  if num_steps > length:
    raise ConfigError(f'num_steps={num_steps} exceeds this sampler\'s max_steps={length}')
  table = np.full(length + 1, -1, np.int32)
  table[:num_steps] = schedules_lib.sampling_timesteps(num_steps, schedule.num_timesteps, spacing)
  return table


def guided_output(denoise_fn: DenoiseFn, variables, x, t, cond, null_cond, scale):
  """Classifier-free guidance from one pass over [cond; null_cond]."""
  both = jax.tree.map(lambda c, u: jnp.concatenate([c, u]), cond, null_cond)
  out = denoise_fn(variables, jnp.concatenate([x, x]), jnp.concatenate([t, t]), both)
  conditional, unconditional = jnp.split(out.astype(jnp.float32), 2)
  return unconditional + scale * (conditional - unconditional)


def sample_loop(denoise_fn: DenoiseFn, schedule: schedules_lib.NoiseSchedule, variables,
                noise: jax.Array, cond, table: jax.Array, num_steps, *, method: str,
                prediction: str, eta=0.0, guidance_scale=None, null_cond=None,
                rng: Optional[jax.Array] = None) -> jax.Array:
  """Runs `num_steps` (may be traced) steps from `noise` at table[0] down to clean data.

  Pure and jittable; `Sampler` wraps it with jit and sharding. guidance_scale=None switches
  guidance off (one pass per step); otherwise null_cond is the unconditional input.
  """
  if isinstance(method, str) and method not in METHODS:
    raise ConfigError(f'unknown sampler {method!r}; known: {", ".join(METHODS)}')
  batch = noise.shape[0]
  rng = jax.random.key(0) if rng is None else rng

  def predict(x, t):
    t = jnp.full((batch,), t, jnp.int32)
    if guidance_scale is None:
      out = denoise_fn(variables, x, t, cond).astype(jnp.float32)
    else:
      out = guided_output(denoise_fn, variables, x, t, cond, null_cond, guidance_scale)
    return schedules_lib.split_prediction(schedule, out, x, t, prediction)

  def ddim(i, x, t, s, x0, eps, eta):
    abar_t, abar_s = schedule.alpha_sigma(t)[0] ** 2, schedule.alpha_sigma(s)[0] ** 2
    sigma = eta * jnp.sqrt((1 - abar_s) / (1 - abar_t) * (1 - abar_t / abar_s))
    direction = jnp.sqrt(jnp.maximum(1 - abar_s - sigma ** 2, 0.0))
    z = jax.random.normal(jax.random.fold_in(rng, i), x.shape, jnp.float32)
    return jnp.sqrt(abar_s) * x0 + direction * eps + sigma * z

  def ddpm(i, x, t, s, x0):
    abar_t, abar_s = schedule.alpha_sigma(t)[0] ** 2, schedule.alpha_sigma(s)[0] ** 2
    beta = 1 - abar_t / abar_s  # β of the strided step t -> s.
    mean = (jnp.sqrt(abar_s) * beta * x0 + jnp.sqrt(abar_t / abar_s) * (1 - abar_s) * x) / (
        1 - abar_t)
    std = jnp.sqrt(beta * (1 - abar_s) / (1 - abar_t))
    z = jax.random.normal(jax.random.fold_in(rng, i), x.shape, jnp.float32)
    return mean + std * z

  def dpm_solver_pp(i, x, t, s, x0, x0_prev, h_prev):
    alpha_t, sigma_t = schedule.alpha_sigma(t)
    alpha_s, sigma_s = schedule.alpha_sigma(s)
    final = s < 0  # σ_s = 0: the exact first-order step lands on x̂_0.
    sigma_s_safe = jnp.where(final, 1.0, sigma_s)
    h = (jnp.log(alpha_s) - jnp.log(sigma_s_safe)) - (jnp.log(alpha_t) - jnp.log(sigma_t))
    r = h_prev / h
    second_order = x0 + (x0 - x0_prev) / (2 * jnp.where(i > 0, r, 1.0))
    data = jnp.where((i > 0) & ~final, second_order, x0)
    x_s = (sigma_s / sigma_t) * x - alpha_s * jnp.expm1(-h) * data
    return jnp.where(final, x0, x_s), h

  def ddim_update(i, x, t, s, x0, eps, x0_prev, h_prev):
    del x0_prev
    return ddim(i, x, t, s, x0, eps, eta), h_prev

  def ddpm_update(i, x, t, s, x0, eps, x0_prev, h_prev):
    del eps, x0_prev
    return ddpm(i, x, t, s, x0), h_prev

  def dpm_update(i, x, t, s, x0, eps, x0_prev, h_prev):
    del eps
    return dpm_solver_pp(i, x, t, s, x0, x0_prev, h_prev)

  updates = (ddim_update, ddpm_update, dpm_update)  # In the order of METHODS.

  def body(i, carry):
    x, x0_prev, h_prev = carry
    t, s = table[i], table[i + 1]
    x0, eps = predict(x, t)  # The one network evaluation per step, shared by every method.
    args = (i, x, t, s, x0, eps, x0_prev, h_prev)
    if isinstance(method, str):
      x, h = updates[METHODS.index(method)](*args)
    else:  # A traced index: one compiled loop serves all samplers.
      x, h = jax.lax.switch(method, updates, *args)
    return x, x0, h

  x = noise.astype(jnp.float32)
  init = (x, jnp.zeros_like(x), jnp.ones((), jnp.float32))
  return jax.lax.fori_loop(0, num_steps, body, init)[0]


class Sampler:
  """A compiled sampler bound to a denoiser and schedule. Step count (<= max_steps), method,
  guidance scale and η are call arguments that need no recompilation:

    sampler = Sampler(denoise_fn, schedule, prediction='v', mesh=mesh)
    images = sampler(variables, noise, cond, method='dpm_solver_pp', num_steps=10,
                     guidance_scale=2.0, null_cond=null)
  """

  def __init__(self, denoise_fn: DenoiseFn, schedule: schedules_lib.NoiseSchedule, *,
               method: str = 'ddim', prediction: str = 'eps', max_steps: int = 50,
               spacing: str = 'trailing', mesh: Optional[Mesh] = None):
    _check_method(method)
    if prediction not in schedules_lib.PREDICTIONS:
      raise ConfigError(f'unknown prediction {prediction!r}; known: '
                        f'{", ".join(schedules_lib.PREDICTIONS)}')
    self.denoise_fn, self.schedule = denoise_fn, schedule
    self.method, self.prediction, self.spacing = method, prediction, spacing
    self.max_steps, self.mesh = max_steps, mesh
    self._sharding = parallel.batch_sharding(mesh) if mesh is not None else None
    self._run = jax.jit(self._loop, static_argnames=('guided',))

  def _constrain(self, tree):
    if self._sharding is None or tree is None:
      return tree
    return jax.lax.with_sharding_constraint(tree, self._sharding)

  def _loop(self, variables, noise, cond, null_cond, table, num_steps, method, eta, scale, rng,
            *, guided: bool):
    noise, cond, null_cond = (self._constrain(a) for a in (noise, cond, null_cond))
    samples = sample_loop(self.denoise_fn, self.schedule, variables, noise, cond, table,
                          num_steps, method=method, prediction=self.prediction, eta=eta,
                          guidance_scale=scale if guided else None, null_cond=null_cond, rng=rng)
    return self._constrain(samples)

  def __call__(self, variables, noise: jax.Array, cond=None, *, num_steps: int,
               method: Optional[str] = None, guidance_scale: Optional[float] = None,
               null_cond=None, eta: float = 0.0, rng: Optional[jax.Array] = None) -> jax.Array:
    """Samples (float32, the shape of `noise`). guidance_scale=None: no guidance (one pass)."""
    method = _check_method(method or self.method)
    guided = guidance_scale is not None
    if guided and null_cond is None:
      raise ConfigError('classifier-free guidance needs null_cond (the unconditional input)')
    if self.mesh is not None:
      parallel.check_batch_size(noise.shape[0], self.mesh, 'the number of samples')
    table = step_table(self.schedule, num_steps, self.max_steps, self.spacing)
    return self._run(variables, noise, cond, null_cond if guided else None, jnp.asarray(table),
                     jnp.int32(num_steps), jnp.int32(METHODS.index(method)), jnp.float32(eta),
                     jnp.float32(guidance_scale if guided else 1.0),
                     jax.random.key(0) if rng is None else rng, guided=guided)


def _check_method(method: str) -> str:
  if method not in METHODS:
    raise ConfigError(f'unknown sampler {method!r}; known: {", ".join(METHODS)}')
  return method
