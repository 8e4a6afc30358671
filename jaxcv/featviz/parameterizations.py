"""Image parameterisations for feature visualisation: MACO, Lucid's Fourier image, pixels, and
the magnitude-and-phase ablation.

Each one maps its parameters for ONE image to a float [H, W, 3] image in [0, 1] (the zoo models
take [0, 1] input and normalise inside), initialises them, and names its optimiser:

- 'maco' (Fel et al. 2023, Xplique `maco_image_parametrization`): a fixed magnitude r, a learnable
  phase φ; x = sigmoid(standardize(irfft2(r·e^{i·standardize(φ)})) @ C). Only the phase moves.
  NAdam, lr 1.0.
- 'fourier' (Olah et al. 2017, Lucid `fft_image` + `to_valid_rgb`): a learnable complex spectrum
  S ~ N(0, 0.01), x = sigmoid((irfft2(w ⊙ S) / 4) @ C), w = √(HW) / max(f, 1/max(H, W))^d.
  Adam, lr 0.05.
- 'pixel' (Lucid `naive` + `to_valid_rgb`): learnable pixels p ~ N(0, 0.01), x = sigmoid(p @ C).
  Adam, lr 0.05.
- 'mag_phase' (the ablation): the MACO image with the magnitude learnable too, started flat
  (no 1/f decay prior), NAdam lr 1.0 on both.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxcv.errors import ConfigError
from jaxcv.featviz import spectrum

PARAMETERIZATIONS = ('maco', 'fourier', 'pixel', 'mag_phase')
_EPS = 1e-5  # Xplique's standardisation epsilon.


@dataclasses.dataclass(frozen=True)
class Parameterization:
  """init(key) -> parameters of one image; render(parameters) -> [H, W, 3] in [0, 1]."""
  name: str
  height: int
  width: int
  init: Callable[[jax.Array], Any]
  render: Callable[[Any], jax.Array]
  optimizer: optax.GradientTransformation

  def init_batch(self, key: jax.Array, num: int) -> Any:
    """Parameters of `num` independent images (leading axis), one key each."""
    return jax.vmap(self.init)(jax.random.split(key, num))

  def render_batch(self, params: Any) -> jax.Array:
    return jax.vmap(self.render)(params)


def _standardize(x: jax.Array) -> jax.Array:
  return (x - jnp.mean(x)) / (jnp.std(x) + _EPS)


def maco_image(magnitude: jax.Array, phase: jax.Array, height: int, width: int) -> jax.Array:
  """Xplique's MACO image from a magnitude and a phase [3, H, W//2+1]: [H, W, 3] in [0, 1]."""
  phase = _standardize(phase)
  x = jnp.fft.irfft2(magnitude * jnp.cos(phase) + 1j * magnitude * jnp.sin(phase),
                     s=(height, width))
  x = _standardize(jnp.moveaxis(x, 0, -1))
  return jax.nn.sigmoid(spectrum.recorrelate(x))


def fourier_scale(height: int, width: int, decay_power: float) -> np.ndarray:
  """Lucid's per-coefficient spectrum scale √(HW) / max(f, 1/max(H, W))^d."""
  freqs = spectrum.rfft2_freqs(height, width)
  scale = 1.0 / np.maximum(freqs, 1.0 / max(height, width))**decay_power
  return (scale * np.sqrt(height * width)).astype(np.float32)


def maco(height: int, width: int, magnitude, lr: float = 1.0) -> Parameterization:
  if magnitude is None:
    raise ConfigError("the 'maco' parameterisation needs a magnitude spectrum (computed from a "
                      'dataset or loaded from a .npy file)')
  magnitude = jnp.asarray(spectrum.resize_magnitude(magnitude, height, width))
  shape = spectrum.spectrum_shape(height, width)
  return Parameterization(
      'maco', height, width,
      init=lambda key: jax.random.normal(key, shape),  # Xplique's N(0, 1); standardised anyway.
      render=lambda phase: maco_image(magnitude, phase, height, width),
      optimizer=optax.nadam(lr))


def mag_phase(height: int, width: int, lr: float = 1.0) -> Parameterization:
  shape = spectrum.spectrum_shape(height, width)

  def init(key):
    return {'magnitude': jnp.ones(shape), 'phase': jax.random.normal(key, shape)}
  return Parameterization(
      'mag_phase', height, width, init=init,
      render=lambda p: maco_image(p['magnitude'], p['phase'], height, width),
      optimizer=optax.nadam(lr))


def fourier(height: int, width: int, lr: float = 0.05, decay_power: float = 1.0,
            init_std: float = 0.01) -> Parameterization:
  scale = jnp.asarray(fourier_scale(height, width, decay_power))
  shape = (2, *spectrum.spectrum_shape(height, width))

  def render(coefficients):
    x = jnp.fft.irfft2(scale * (coefficients[0] + 1j * coefficients[1]), s=(height, width))
    return jax.nn.sigmoid(spectrum.recorrelate(jnp.moveaxis(x, 0, -1) / 4.0))
  return Parameterization('fourier', height, width,
                          init=lambda key: init_std * jax.random.normal(key, shape),
                          render=render, optimizer=optax.adam(lr))


def pixel(height: int, width: int, lr: float = 0.05, init_std: float = 0.01) -> Parameterization:
  return Parameterization(
      'pixel', height, width,
      init=lambda key: init_std * jax.random.normal(key, (height, width, 3)),
      render=lambda p: jax.nn.sigmoid(spectrum.recorrelate(p)),
      optimizer=optax.adam(lr))


def build(name: str, height: int, width: int, *, magnitude: Optional[np.ndarray] = None,
          lr: Optional[float] = None, decay_power: float = 1.0) -> Parameterization:
  """The parameterisation `name` (one of PARAMETERIZATIONS) for an H×W canvas; `lr` None keeps
  its reference learning rate."""
  kwargs = {} if lr is None else {'lr': lr}
  if name == 'maco':
    return maco(height, width, magnitude, **kwargs)
  if name == 'mag_phase':
    return mag_phase(height, width, **kwargs)
  if name == 'fourier':
    return fourier(height, width, decay_power=decay_power, **kwargs)
  if name == 'pixel':
    return pixel(height, width, **kwargs)
  raise ConfigError(f'unknown feature-visualisation parameterisation {name!r}; known: '
                    f'{", ".join(PARAMETERIZATIONS)}')
