"""DomainBed's synthetic datasets built from MNIST: RotatedMNIST and ColoredMNIST, exactly.

As DomainBed's MultipleEnvironmentMNIST: the 70,000 MNIST images (train then test) are shuffled
with `torch.randperm(70000)` from torch's CPU generator after `torch.manual_seed(seed)` (seed =
DomainBed's train.py `--seed`, default 0) and dealt round-robin into the environments (env i gets
shuffled[i::num_envs]), then each environment is transformed:

- RotatedMNIST: 6 environments rotated by 0, 15, 30, 45, 60, 75 degrees counter-clockwise with
  PIL's Image.rotate (bilinear, zero fill, same size), which is what torchvision's rotate does to
  the PIL image in DomainBed; 1 channel, the 10 digit classes.
- ColoredMNIST: 3 environments '+90%', '+80%', '-90%'. Label = (digit < 5) flipped where
  `torch.rand(n) < 0.25`; colour = label flipped where `torch.rand(n) < 0.1, 0.2, 0.9`; the
  image is stacked into 2 channels and the channel other than `colour` is zeroed (so channel
  `colour` holds the digit). Class 1 means "digit < 5" before the label noise. The draws follow
  the shuffle in DomainBed's order: env 0's label flips, env 0's colour flips, env 1's, ...

torch's random numbers come from torch_rng.py (numpy, no torch at run time), checked against
torch. Images stay uint8 (DomainBed divides by 255; the loop's to_float does the same).
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np

from jaxcv.data import sources
from jaxcv.data.dataset import ArrayDataset
from jaxcv.domain_generalization.torch_rng import TorchCPUGenerator
from jaxcv.errors import DatasetNotFoundError

ROTATIONS = (0, 15, 30, 45, 60, 75)
ROTATED_ENVS = tuple(str(a) for a in ROTATIONS)
COLOR_FLIPS = (0.1, 0.2, 0.9)
COLORED_ENVS = ('+90%', '+80%', '-90%')
COLORED_CLASSES = ('digit>=5', 'digit<5')
LABEL_FLIP = 0.25
DEFAULT_SEED = 0  # DomainBed's train.py --seed default.
KINDS = ('rotated', 'colored')


def read_mnist_70k(directory: Path) -> tuple[np.ndarray, np.ndarray]:
  """MNIST train then test from the idx files: uint8 [70000, 28, 28], int64 [70000]."""
  train, test = (sources.read_mnist_idx(directory, split) for split in ('train', 'test'))
  images = np.concatenate([train.images, test.images])[..., 0]
  return images, np.concatenate([train.labels, test.labels]).astype(np.int64)


def rotate(images: np.ndarray, angle: float) -> np.ndarray:
  """uint8 [N, H, W] rotated counter-clockwise by `angle` degrees (bilinear, zero fill)."""
  from PIL import Image  # pylint: disable=g-import-not-at-top
  if angle == 0:
    return images.copy()  # PIL's rotate by 0 is the identity too; skip the 10k round trips.
  return np.stack([np.asarray(Image.fromarray(im).rotate(angle, resample=Image.BILINEAR,
                                                         fillcolor=0)) for im in images])


def color(images: np.ndarray, digits: np.ndarray, flip: float,
          rng: TorchCPUGenerator) -> tuple[np.ndarray, np.ndarray]:
  """One ColoredMNIST environment: (uint8 [N, H, W, 2] images, int32 binary labels)."""
  labels = (digits < 5).astype(np.int32) ^ rng.bernoulli_as_domainbed(LABEL_FLIP, len(digits))
  colors = labels ^ rng.bernoulli_as_domainbed(flip, len(digits))
  out = np.zeros(images.shape + (2,), np.uint8)
  out[np.arange(len(images)), ..., colors] = images  # The other channel stays zero.
  return out, labels.astype(np.int32)


def environments(kind: str, images: np.ndarray, digits: np.ndarray,
                 only: Optional[int] = None, seed: int = DEFAULT_SEED) -> ArrayDataset:
  """All environments of `kind` ('rotated' | 'colored') built from MNIST images [N, H, W] and
  digit labels, or only environment `only`, as DomainBed builds them under `--seed seed`; domain
  ids index the environment names."""
  names = ROTATED_ENVS if kind == 'rotated' else COLORED_ENVS
  rng = TorchCPUGenerator(seed)
  shuffle = rng.randperm(len(images))
  parts = []
  for env in range(len(names)):
    take = shuffle[env::len(names)]
    env_images, env_labels = images[take], digits[take]
    if kind == 'colored':
      # Drawn for every environment, so that each one's noise is the same whichever is loaded.
      env_images, env_labels = color(env_images, env_labels, COLOR_FLIPS[env], rng)
    if only is not None and env != only:
      continue
    if kind == 'rotated':
      env_images, env_labels = rotate(env_images, ROTATIONS[env])[..., None], env_labels
    parts.append((env_images, env_labels.astype(np.int32), np.full(len(take), env, np.int32)))
  images_out, labels_out, domains = (np.concatenate(p) for p in zip(*parts))
  return ArrayDataset(images_out, labels_out,
                      sources.MNIST_CLASSES if kind == 'rotated' else COLORED_CLASSES,
                      domains=domains, domain_names=list(names),
                      source=f'{kind}_mnist (DomainBed construction, seed {seed})')


def read(kind: str, directory: Path, split: str, seed: int = DEFAULT_SEED) -> ArrayDataset:
  """Split `split` ('all' or an environment name) of rotated_mnist / colored_mnist under
  DomainBed's `--seed seed`, from the MNIST idx files in `directory` (the registry's reader:
  jaxcv/data/registry.py, names `rotated_mnist` and `rotated_mnist(seed=N)`)."""
  names = ROTATED_ENVS if kind == 'rotated' else COLORED_ENVS
  if split != 'all' and split not in names:
    raise DatasetNotFoundError(f'{kind}_mnist has splits all, {", ".join(names)}; not {split!r}')
  images, digits = read_mnist_70k(directory)
  dataset = environments(kind, images, digits, None if split == 'all' else names.index(split),
                         seed)
  dataset.source += f' from {directory}'
  return dataset
