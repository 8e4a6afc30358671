"""PolyMNIST built from the MNIST idx files, and a reader of the published PolyMNIST files.

The recipe of MoPoE's generator (Sutter et al. 2021; the SBM paper's Extended PolyMNIST uses the
same with 10 backgrounds):
- tuples are paired by label only: for each modality k and each digit class, an independent
  random permutation of that class's MNIST images picks modality k's digit of every tuple;
- each image: the MNIST digit binarised (> 128) over a random 28x28 crop of modality k's
  background, with the crop's colours inverted (255 - v) at the digit's pixels.

Departure: the original background photos are not at hand, so each modality's background is a
procedural 128x128 RGB texture (a colour with channels near 0 or 1, plus faint random
sinusoidal gratings and blobs, seeded by the modality index alone), distinct per modality. Modality k depends only on (seed, k, split):
the 5-modality set is exactly the first five modalities of the 10-modality one, so the
unimodal stage-1 runs serve both.

Datasets by name (jaxcv/data/registry.py: derived kind 'polymnist' over 'mnist'):
  polymnist(modality=k,modalities=5,seed=0):mnist   one modality, uint8 [N, 28, 28, 3] (stage 1)
  polymnist(modalities=5,seed=0):mnist              the whole tuple, modalities stacked on the
                                                    channel axis: [N, 28, 28, 3 * M] (stage 2)
  option n=N keeps the first N tuples (0: all 60,000 train / 10,000 test);
  option stack=examples puts the modalities one after the other on the example axis instead
  ([M * N, 28, 28, 3], labels repeated): the training set of one classifier shared by all.
`polymnist_files` reads the published files (PolyMNIST/<split>/m<k>/<index>.<label>.png).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Optional

import numpy as np

from jaxcv.data import registry
from jaxcv.data.dataset import ArrayDataset
from jaxcv.errors import ConfigError, DatasetFormatError, DatasetNotFoundError

CHANNELS = 3  # RGB per modality.
BACKGROUND_SIZE = 128
DIGIT_THRESHOLD = 128
_SPLIT_IDS = {'train': 0, 'test': 1}
OPTIONS = {'modality': -1, 'modalities': 5, 'seed': 0, 'n': 0, 'stack': 'channels'}
STACKS = ('channels', 'examples')


def background(modality: int, size: int = BACKGROUND_SIZE) -> np.ndarray:
  """Modality `modality`'s procedural background: uint8 [size, size, 3], fixed per index."""
  rng = np.random.default_rng([7919, modality])
  yy, xx = np.meshgrid(np.linspace(0, 1, size), np.linspace(0, 1, size), indexing='ij')
  image = np.zeros((size, size, 3))
  # Channels near 0 or 1 (never mid-grey), so that the inverted digit contrasts with the crop:
  # 255 - v is close to v where v is near 128, and such a digit is nearly invisible to the
  # autoencoders' squared error.
  base = np.where(rng.random(3) < 0.5, rng.uniform(0.05, 0.2, 3), rng.uniform(0.8, 0.95, 3))
  for _ in range(4):  # Coloured gratings of random frequency and orientation.
    angle, freq, phase = rng.uniform(0, np.pi), rng.uniform(2, 12), rng.uniform(0, 2 * np.pi)
    wave = np.sin(2 * np.pi * freq * (np.cos(angle) * xx + np.sin(angle) * yy) + phase)
    image += wave[..., None] * rng.uniform(-0.06, 0.06, 3)
  for _ in range(6):  # Soft blobs.
    cy, cx, r = rng.uniform(0, 1), rng.uniform(0, 1), rng.uniform(0.05, 0.3)
    blob = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r * r))
    image += blob[..., None] * rng.uniform(-0.1, 0.1, 3)
  image = base + image + 0.05 * rng.standard_normal((size, size, 3))
  return (np.clip(image, 0, 1) * 255).astype(np.uint8)


def class_paired_permutation(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
  """perm with labels[perm[i]] == labels[i]: each class's indices shuffled among themselves."""
  perm = np.empty(len(labels), np.int64)
  for c in np.unique(labels):
    where = np.flatnonzero(labels == c)
    perm[where] = rng.permutation(where)
  return perm


def render(digits: np.ndarray, texture: np.ndarray, rng: np.random.Generator) -> np.ndarray:
  """uint8 [N, 28, 28, 3]: each binarised digit over a random crop of `texture`, inverted on it."""
  n, h, w = digits.shape
  oy = rng.integers(0, texture.shape[0] - h + 1, n)
  ox = rng.integers(0, texture.shape[1] - w + 1, n)
  rows = oy[:, None, None] + np.arange(h)[None, :, None]
  cols = ox[:, None, None] + np.arange(w)[None, None, :]
  crops = texture[rows, cols]  # [N, h, w, 3]
  mask = (digits > DIGIT_THRESHOLD)[..., None]
  return np.where(mask, 255 - crops, crops).astype(np.uint8)


def modality_images(mnist_images: np.ndarray, labels: np.ndarray, modality: int, seed: int,
                    split: str) -> np.ndarray:
  """Modality `modality` of every tuple (tuple i has label labels[i]); deterministic per
  (seed, modality, split)."""
  rng = np.random.default_rng([seed, modality, _SPLIT_IDS.get(split, 2)])
  perm = class_paired_permutation(labels, rng)
  return render(mnist_images[perm], background(modality), rng)


def build(base: ArrayDataset, split: str, modality: int = -1, modalities: int = 5, seed: int = 0,
          n: int = 0, stack: str = 'channels') -> ArrayDataset:
  """PolyMNIST from an MNIST split (uint8 [N, 28, 28, 1]): one modality or the stacked tuple."""
  if modalities < 1:
    raise ConfigError(f'polymnist needs modalities >= 1, got {modalities}')
  if not -1 <= modality < modalities:
    raise ConfigError(f'polymnist modality={modality} is outside 0..{modalities - 1} '
                      '(-1: all, stacked on the channel axis)')
  if base.images.shape[1:] != (28, 28, 1):
    raise ConfigError(f'polymnist is built from MNIST-like [N, 28, 28, 1] images, got '
                      f'{base.images.shape} from {base.source}')
  if stack not in STACKS:
    raise ConfigError(f'polymnist stack={stack!r}: expected one of {STACKS}')
  images, labels = base.images[..., 0], np.asarray(base.labels)
  if n:
    images, labels = images[:n], labels[:n]
  which = range(modalities) if modality < 0 else [modality]
  parts = [modality_images(images, labels, k, seed, split) for k in which]
  if stack == 'examples':
    stacked, labels = np.concatenate(parts, 0), np.tile(labels, len(parts))
  else:
    stacked = np.concatenate(parts, -1)
  what = 'all' if modality < 0 else f'modality {modality}'
  return ArrayDataset(stacked, labels.astype(np.int32), base.class_names,
                      source=f'PolyMNIST-{modalities} ({what}, seed {seed}, procedural '
                             f'backgrounds) from {base.source}')


def load_derived(kind: str, text: Optional[str], base: ArrayDataset, split: str) -> ArrayDataset:
  """The registry's entry for `polymnist(...):mnist`."""
  options = registry.parse_derived_options(kind, text, OPTIONS)
  return build(base, split, **options)


def split_modalities(images, modalities: int):
  """[..., H, W, 3 * M] -> list of M arrays [..., H, W, 3] (numpy or jax)."""
  if images.shape[-1] != CHANNELS * modalities:
    raise ConfigError(f'expected {modalities} stacked RGB modalities ({CHANNELS * modalities} '
                      f'channels), got images of shape {tuple(images.shape)}')
  return [images[..., CHANNELS * k:CHANNELS * (k + 1)] for k in range(modalities)]


# ------------------------------------------------------------------ the published files

_FILE = re.compile(r'^(\d+)\.(\d+)\.png$')


def _read_modality(folder: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  from PIL import Image  # pylint: disable=import-outside-toplevel
  entries = []
  for path in folder.iterdir():
    match = _FILE.match(path.name)
    if match:
      entries.append((int(match.group(1)), int(match.group(2)), path))
  if not entries:
    raise DatasetNotFoundError(f'{folder} holds no PolyMNIST images named <index>.<label>.png')
  entries.sort()
  images = np.stack([np.asarray(Image.open(p).convert('RGB')) for _, _, p in entries])
  return (np.array([i for i, _, _ in entries]), np.array([l for _, l, _ in entries], np.int32),
          images)


def read_published(root: Path, split: str, modality: int = -1,
                   modalities: int = 5) -> ArrayDataset:
  """The published PolyMNIST (MoPoE's files): root/<split>/m<k>/<index>.<label>.png."""
  folders = [root / split / f'm{k}' for k in range(modalities)]
  missing = [str(f) for f in folders if not f.is_dir()]
  if missing:
    raise DatasetNotFoundError(
        f'PolyMNIST files not found: expected folders {", ".join(missing)} holding '
        '<index>.<label>.png images (the published PolyMNIST of MoPoE, '
        'https://github.com/thomassutter/MoPoE). Or build it from MNIST: '
        "'polymnist(modalities=5):mnist'.")
  which = range(modalities) if modality < 0 else [modality]
  parts, labels, index = [], None, None
  for k in which:
    idx, lab, images = _read_modality(folders[k])
    if index is not None and (not np.array_equal(idx, index) or not np.array_equal(lab, labels)):
      raise DatasetFormatError(f'{folders[k]} does not hold the same <index>.<label> files as '
                               f'{folders[which[0]]}: tuples are not aligned')
    index, labels = idx, lab
    parts.append(images)
  return ArrayDataset(np.concatenate(parts, -1), labels, [str(d) for d in range(10)],
                      source=f'PolyMNIST files in {root / split}')
