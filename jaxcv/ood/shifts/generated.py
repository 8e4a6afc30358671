"""BROAD's synthetic shift: class-conditional samples of a jaxcv diffusion run.

`generated(run=runs/gen):cifar10` draws `per_class` images of every class of the base dataset
from the class-conditional diffusion run at `run` (any run of the `diffusion` task, e.g.
configs/ldm_scaling/cifar10_unet.py), with the run's own sampler (DDIM / DDPM / DPM-Solver++,
optional classifier-free guidance), and resizes them to the base dataset's image size, so that
the classifier under test sees its own input shape. Samples are quantised to uint8, as a
generated image saved to disk is. The labels are the conditioning classes.
"""

from __future__ import annotations

import logging

import jax
import jax.numpy as jnp
import numpy as np

from jaxcv.data import sources
from jaxcv.data.dataset import ArrayDataset
from jaxcv.errors import ConfigError

log = logging.getLogger(__name__)


def check_generator(run, class_names) -> None:
  """A clear error unless `run` is a class-conditional diffusion run over `class_names`."""
  settings = getattr(run.task, 'settings', None)
  if not hasattr(run.task, 'generate') or settings is None:
    raise ConfigError(f'generated(run={run.path}): that run is a {run.config.task!r} run, not a '
                      'diffusion run (task "diffusion") that can sample images')
  if settings.conditioning != 'class':
    raise ConfigError(f'generated(run={run.path}): the run is conditioned on '
                      f'{settings.conditioning!r}; class-conditional samples need a run with '
                      'conditioning "class"')
  if run.task.num_classes != len(class_names):
    raise ConfigError(f'generated(run={run.path}): the run has {run.task.num_classes} classes, '
                      f'the base dataset {len(class_names)}')


def sample(run, class_names, per_class: int, method: str, steps: int, guidance: float,
           seed: int, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
  """uint8 images [per_class * classes, H, W, C] and their int32 class labels (class-major)."""
  check_generator(run, class_names)
  if per_class <= 0 or steps <= 0 or batch_size <= 0:
    raise ConfigError(f'generated(...) needs per_class, steps and batch_size > 0, got '
                      f'{per_class}, {steps}, {batch_size}')
  labels = np.repeat(np.arange(len(class_names), dtype=np.int32), per_class)
  rng, chunks = jax.random.PRNGKey(seed), []
  for start in range(0, len(labels), batch_size):
    batch = labels[start:start + batch_size]
    padded = np.pad(batch, (0, batch_size - len(batch)))  # One compiled shape.
    # The task's sampler is compiled once per shape and serves every method and step count.
    images = run.task.generate(run.variables, jax.random.fold_in(rng, start), jnp.asarray(padded),
                               method=method, num_steps=steps,
                               guidance_scale=guidance if guidance > 0 else None)
    chunks.append(np.asarray(images)[:len(batch)])
  images = np.concatenate(chunks)
  return np.round(np.clip(images, 0.0, 1.0) * 255).astype(np.uint8), labels


def generated(base: ArrayDataset, run, params: dict) -> ArrayDataset:
  """The synthetic split of `base`'s classes from diffusion run `run` (inference.LoadedRun)."""
  images, labels = sample(run, base.class_names, params['per_class'], params['sampler'],
                          params['steps'], params['guidance'], params['seed'],
                          params['batch_size'])
  guidance = f', guidance {params["guidance"]}' if params['guidance'] > 0 else ''
  data = ArrayDataset(images, labels, base.class_names,
                      source=f'{len(labels)} samples of {run.name} ({params["sampler"]}, '
                             f'{params["steps"]} steps{guidance})')
  if images.shape[-1] != base.images.shape[-1]:
    raise ConfigError(f'generated(run={run.path}): the run samples {images.shape[-1]}-channel '
                      f'images, the base dataset has {base.images.shape[-1]} channels')
  resized = sources.resize(data, base.images.shape[1:3])
  if resized is not data:
    resized.source = f'{data.source}, resized to {base.images.shape[1]}x{base.images.shape[2]}'
  log.info('generated: %s', resized.source)
  return resized
