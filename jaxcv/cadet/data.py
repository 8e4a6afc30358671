"""CIFAR-10.1 (Recht et al. 2018), the shifted sample of CADet's two-sample test: read from the
official numpy files when a user has them (nothing is downloaded).

Expected under the data directory (or its `cifar10.1/` or `CIFAR-10.1/datasets/` folder), as
published at github.com/modestyachts/CIFAR-10.1 (`datasets/`):
  cifar10.1_v4_data.npy    uint8 [2031, 32, 32, 3]   (v6: [2000, 32, 32, 3])
  cifar10.1_v4_labels.npy  int   [2031]
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import numpy as np

from jaxcv.data.dataset import ArrayDataset
from jaxcv.errors import ConfigError, DatasetFormatError, DatasetNotFoundError

VERSIONS = ('v4', 'v6')
CLASSES = ('airplane', 'automobile', 'bird', 'cat', 'deer', 'dog', 'frog', 'horse', 'ship',
           'truck')
SUBFOLDERS = ('', 'cifar10.1', 'CIFAR-10.1/datasets')


def load_cifar10_1(data_dir: Optional[str] = None, version: str = 'v4') -> ArrayDataset:
  """CIFAR-10.1 `version` as an ArrayDataset (uint8 NHWC, CIFAR-10's class order)."""
  if version not in VERSIONS:
    raise ConfigError(f'CIFAR-10.1 version must be one of {VERSIONS}, got {version!r}')
  root = Path(data_dir or os.environ.get('JAXCV_DATA_DIR') or '.')
  names = (f'cifar10.1_{version}_data.npy', f'cifar10.1_{version}_labels.npy')
  for sub in SUBFOLDERS:
    folder = root / sub
    if all((folder / n).is_file() for n in names):
      images = np.load(folder / names[0])
      labels = np.load(folder / names[1]).astype(np.int32)
      if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1:] != (32, 32, 3) \
          or len(labels) != len(images):
        raise DatasetFormatError(f'{folder / names[0]}: expected uint8 [N, 32, 32, 3] images '
                                 f'and N labels, got {images.dtype} {images.shape} and '
                                 f'{len(labels)} labels')
      return ArrayDataset(images, labels, list(CLASSES), source=f'CIFAR-10.1 {version} ({folder})')
  raise DatasetNotFoundError(
      f'CIFAR-10.1 {version} not found: expected {names[0]} and {names[1]} in {root} (or its '
      f'{", ".join(s for s in SUBFOLDERS if s)} folder), from '
      'https://github.com/modestyachts/CIFAR-10.1 (datasets/)')
