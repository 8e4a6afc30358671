"""Convolution-based unlearnable datasets: CUDA (Sadasivan et al., CVPR 2023) and the VUDA / HUDA
variants of COIN (Wang et al., arXiv 2311.18403).

CUDA, as its official generator does it:
  - seed NumPy's legacy generator with the private key; for each class k in order draw a 3x3
    kernel with entries ~ U(0, pb) and set one uniformly random entry to 1.0 (the same draws, in
    the same order, as the reference code, so a key gives the reference kernels);
  - poison every training image x of class y: depthwise convolution (cross-correlation, as
    PyTorch's Conv2d) with w_y on each channel, zero padding, zero bias; divide by the image's
    global max (over H, W and C); scale by 255, clip, truncate to uint8.
The test split is never poisoned.

VUDA and HUDA are jaxcv's documented interpretation (the paper's exact definition was not
available): the same generator with a vertical (size x 1) or horizontal (1 x size) kernel, the
same pb and "one entry set to 1" rules and the same normalisation.

`poison_images` is one jitted, batched op (9 shifted multiply-adds per image) run in fixed-size
chunks, so a 50k-image dataset is poisoned in seconds and compiles once.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxcv.errors import ConfigError

METHODS = ('cuda', 'vuda', 'huda')


def kernel_shape(method: str, size: int = 3) -> tuple[int, int]:
  if method not in METHODS:
    raise ConfigError(f'unknown unlearnable method {method!r}; known: {", ".join(METHODS)}')
  if size < 1 or size % 2 == 0:
    raise ConfigError(f'kernel size must be odd and positive (same-size output), got {size}')
  return {'cuda': (size, size), 'vuda': (size, 1), 'huda': (1, size)}[method]


def class_kernels(num_classes: int, method: str = 'cuda', pb: float = 0.3, seed: int = 0,
                  size: int = 3) -> np.ndarray:
  """The private class-wise filters, float32 [num_classes, kh, kw]."""
  if not 0 <= pb:
    raise ConfigError(f'blur parameter pb must be >= 0, got {pb}')
  shape = kernel_shape(method, size)
  rs = np.random.RandomState(seed)  # The reference code seeds NumPy's global legacy generator.
  kernels = []
  for _ in range(num_classes):
    # The reference draws a weight per channel and keeps channel 0's for all three channels;
    # drawing all three keeps the random stream, hence the kernels, identical to it.
    w = rs.uniform(low=0.0, high=pb, size=(3, *shape))[0]
    w[rs.randint(shape[0]), rs.randint(shape[1])] = 1.0
    kernels.append(w)
  return np.stack(kernels).astype(np.float32)


def convolve(images: jax.Array, kernels: jax.Array) -> jax.Array:
  """Per-image depthwise cross-correlation with zero padding: float [N, H, W, C] with kernels
  [N, kh, kw] (one per image, shared by the channels) -> [N, H, W, C]."""
  n, h, w, _ = images.shape
  kh, kw = kernels.shape[1:]
  padded = jnp.pad(images, ((0, 0), (kh // 2, kh // 2), (kw // 2, kw // 2), (0, 0)))
  out = jnp.zeros_like(images)
  for a in range(kh):
    for b in range(kw):
      out = out + kernels[:, a, b, None, None, None] * padded[:, a:a + h, b:b + w, :]
  return out


@jax.jit
def poison_images(images: jax.Array, kernels: jax.Array) -> jax.Array:
  """uint8 images [N, H, W, C] and per-image kernels [N, kh, kw] -> poisoned uint8 images."""
  x = images.astype(jnp.float32) / 255.0
  out = convolve(x, kernels)
  peak = jnp.max(out, axis=(1, 2, 3), keepdims=True)
  # An all-black image has peak 0; the reference would divide by zero, we keep it black.
  out = out / jnp.where(peak > 0, peak, 1.0)
  return jnp.floor(jnp.clip(out * 255.0, 0.0, 255.0)).astype(jnp.uint8)


def poison(images: np.ndarray, labels: np.ndarray, kernels: np.ndarray,
           chunk: int = 8192) -> np.ndarray:
  """Poisons a whole split on the default device, `chunk` images per call (one compilation)."""
  images = np.asarray(images)
  labels = np.asarray(labels)
  if labels.ndim != 1 or labels.min(initial=0) < 0 or labels.max(initial=0) >= len(kernels):
    raise ConfigError(f'labels must be class indices below {len(kernels)} (one kernel per class)')
  chunk = min(chunk, len(images))
  out = np.empty_like(images)
  for start in range(0, len(images), chunk):
    part = images[start:start + chunk]
    count = len(part)
    if count < chunk:  # Pad the last chunk so that every call has the same shape.
      part = np.concatenate([part, np.zeros((chunk - count, *part.shape[1:]), part.dtype)])
    ids = np.zeros(chunk, np.int64)
    ids[:count] = labels[start:start + count]
    out[start:start + count] = np.asarray(poison_images(part, kernels[ids]))[:count]
  return out
