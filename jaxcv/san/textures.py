"""A synthetic texture-region segmentation set, generated in-process ('texture_regions').

Each image is a Voronoi partition into 3-6 regions; a region's class decides its texture family
(horizontal / vertical / diagonal gratings, dots, checkerboard, noise bands), drawn with a random
pair of colours per region, so colour alone does not tell the class (spec 08's quick-check set).
Deterministic in (split, seed, n, size, classes). Splits: train (seed), val (seed + 1), test
(seed + 2). Name options: n (examples; default 5000 train, 1000 val / test), side (image side,
64), classes (2..6, default 6), seed (0); e.g. 'texture_regions(n=200,side=32)'.
"""

from __future__ import annotations

import numpy as np

from jaxcv.data.dataset import ArrayDataset
from jaxcv.errors import ConfigError

FAMILIES = ('horizontal', 'vertical', 'diagonal', 'dots', 'checker', 'noise_bands')
SPLIT_OFFSETS = {'train': 0, 'val': 1, 'test': 2}


def _pattern(family: str, yy: np.ndarray, xx: np.ndarray, rng: np.random.Generator) -> np.ndarray:
  """A [H, W] texture in [0, 1] of one family, with random period and phase."""
  period = rng.uniform(4.0, 8.0)
  phase = rng.uniform(0, 2 * np.pi)
  wave = lambda t: 0.5 + 0.5 * np.sin(2 * np.pi * t / period + phase)
  if family == 'horizontal':
    return wave(yy)
  if family == 'vertical':
    return wave(xx)
  if family == 'diagonal':
    return wave((xx + yy) / np.sqrt(2))
  if family == 'dots':
    return ((wave(xx) > 0.5) & (wave(yy) > 0.5)).astype(np.float64)
  if family == 'checker':
    cell = int(period) // 2 + 2
    return (((yy // cell) + (xx // cell)) % 2).astype(np.float64)
  # noise_bands: random intensity per thin band along a random direction (no periodicity).
  angle = rng.uniform(0, np.pi)
  band = np.floor((np.cos(angle) * xx + np.sin(angle) * yy) / 2.0).astype(int)
  values = rng.random(band.max() - band.min() + 1)
  return values[band - band.min()]


def generate(n: int, size: int = 64, classes: int = 6, seed: int = 0) -> ArrayDataset:
  if not 2 <= classes <= len(FAMILIES):
    raise ConfigError(f'texture_regions: classes must be in 2..{len(FAMILIES)}, got {classes}')
  rng = np.random.default_rng(seed)
  yy, xx = np.mgrid[:size, :size].astype(np.float64)
  images = np.zeros((n, size, size, 3), np.uint8)
  labels = np.zeros((n, size, size), np.uint8)
  for i in range(n):
    regions = rng.integers(3, 7)
    centres = rng.uniform(0, size, (regions, 2))
    region = np.argmin((yy[..., None] - centres[:, 0]) ** 2 + (xx[..., None] - centres[:, 1]) ** 2,
                       axis=-1)
    image = np.zeros((size, size, 3))
    for r in range(regions):
      cls = rng.integers(classes)
      inside = region == r
      t = _pattern(FAMILIES[cls], yy, xx, rng)[..., None]
      low, high = rng.uniform(0, 0.45, 3), rng.uniform(0.55, 1.0, 3)
      image[inside] = (low + (high - low) * t)[inside]
      labels[i][inside] = cls
    images[i] = np.round(image * 255)
  return ArrayDataset(images, labels, FAMILIES[:classes],
                      source=f'texture_regions(n={n},size={size},classes={classes},seed={seed})')


def load(split: str, size=None, n: int = 0, side: int = 64, classes: int = 6,
         seed: int = 0) -> ArrayDataset:
  """The registry's reader: `split` of texture_regions (size: the data layer's resize, which
  generates at that side instead)."""
  if split not in SPLIT_OFFSETS:
    raise ConfigError(f'texture_regions has splits {sorted(SPLIT_OFFSETS)}, not {split!r}')
  n = n or (5000 if split == 'train' else 1000)
  if size and size[0] != size[1]:
    raise ConfigError(f'texture_regions images are square; image_size {size} is not')
  return generate(n, size[0] if size else side, classes, seed + SPLIT_OFFSETS[split])
