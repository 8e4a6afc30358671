"""Segmentation datasets in their published layouts, and a resized view of any segmentation set.

- `resized(height=H,width=W):NAME` (derived dataset): NAME's images resized bilinearly and its
  label maps by nearest neighbour to H x W (the data layer's `image_size` is square only).
- `cocostuff27`, `cityscapes27`, `potsdam` / `potsdam3`: see their readers below; registered in
  jaxcv/data/registry.py, which imports this module only when one of them is asked for.
Unlabelled pixels are 255 (jaxcv.data.dataset.VOID_LABEL), the field's convention; the
segmentation evaluator does not score them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image

from jaxcv.data import registry, sources
from jaxcv.data.dataset import VOID_LABEL, ArrayDataset


def load_resized(kind: str, options, base: ArrayDataset, split: str) -> ArrayDataset:
  del kind, split
  o = registry.parse_derived_options('resized', options, {'height': 0, 'width': 0})
  if o['height'] <= 0 or o['width'] <= 0:
    from jaxcv.errors import ConfigError  # pylint: disable=import-outside-toplevel
    raise ConfigError(f'resized(...) needs height and width > 0, got {o}')
  resized = sources.resize(base, (o['height'], o['width']))
  resized.source = f'{base.source} resized to {o["height"]}x{o["width"]}'
  return resized


# ---------------------------------------------------------------------------------------------
# Published layouts (STEGO's, mhamilton723/STEGO src/data.py, which PiCIE's and IIC's lists feed)
# ---------------------------------------------------------------------------------------------

# COCO-Stuff's 182 fine ids (stuffthingmaps PNGs: 0..181, 255 unlabelled) -> the 27 coarse
# classes of PiCIE / STEGO (12 things, then 15 stuff), transcribed from STEGO's `fine_to_coarse`.
COCO_FINE_TO_27 = (
    9, 11, 11, 11, 11, 11, 11, 11, 11, 8, 8, 8, 8, 8, 8, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7,  # 0-24
    6, 6, 6, 6, 6, 6, 6, 6, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 5, 5, 5, 5, 5, 5,  # 25-48
    5, 5, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 0, 0,  # 49-72
    0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 4, 4, 4, 4, 4, 4, 4, 4, 17, 17, 22, 20, 20, 22,  # 73-96
    15, 25, 16, 13, 12, 12, 17, 17, 23, 15, 15, 17, 15, 21, 15, 25, 13, 13, 13, 13,  # 97-116
    13, 22, 26, 14, 14, 15, 22, 21, 21, 24, 20, 22, 15, 17, 16, 15, 22, 24, 21, 17,  # 117-136
    25, 16, 21, 17, 22, 16, 21, 21, 25, 21, 26, 21, 24, 20, 17, 14, 21, 26, 15, 23,  # 137-156
    20, 21, 24, 15, 24, 22, 25, 15, 20, 17, 17, 22, 14, 18, 18, 18, 18, 18, 18, 18,  # 157-176
    26, 26, 19, 19, 24)  # 177-181
COCO27_CLASSES = ('electronic', 'appliance', 'food', 'furniture', 'indoor', 'kitchen',
                  'accessory', 'animal', 'outdoor', 'person', 'sports', 'vehicle',
                  'ceiling', 'floor', 'food-stuff', 'furniture-stuff', 'rawmaterial', 'textile',
                  'wall', 'window', 'building', 'ground', 'plant', 'sky', 'solid', 'structural',
                  'water')
COCO_SPLIT_DIRS = {'train': 'train2017', 'val': 'val2017'}
# Cityscapes labelIds 7..33 are the 27 classes (STEGO's first_nonvoid = 7); the rest are void.
CITYSCAPES27_CLASSES = (
    'road', 'sidewalk', 'parking', 'rail track', 'building', 'wall', 'fence', 'guard rail',
    'bridge', 'tunnel', 'pole', 'polegroup', 'traffic light', 'traffic sign', 'vegetation',
    'terrain', 'sky', 'person', 'rider', 'car', 'truck', 'bus', 'caravan', 'trailer', 'train',
    'motorcycle', 'bicycle')
CITYSCAPES_FIRST_CLASS_ID = 7
# Potsdam (IIC's tiles): 6 classes; Potsdam-3 merges them as IIC / STEGO do.
POTSDAM6_CLASSES = ('roads', 'buildings', 'low vegetation', 'trees', 'cars', 'clutter')
POTSDAM3_CLASSES = ('roads and cars', 'buildings and clutter', 'vegetation and trees')
POTSDAM_6_TO_3 = (0, 1, 2, 2, 0, 1)
POTSDAM_SPLIT_FILES = {'train': ('labelled_train.txt',), 'val': ('labelled_test.txt',),
                       'unlabelled_train': ('unlabelled_train.txt',),
                       'train+val': ('labelled_train.txt', 'labelled_test.txt'),
                       'all': ('all.txt',)}


def _missing(what: str, expected) -> None:
  from jaxcv.errors import DatasetNotFoundError  # pylint: disable=import-outside-toplevel
  expected = [str(e) for e in expected]
  raise DatasetNotFoundError(f'{what}: expected {", ".join(expected[:4])}'
                             f'{" ..." if len(expected) > 4 else ""}; not found')


def _remap(labels: np.ndarray, table: Sequence[int], offset: int = 0) -> np.ndarray:
  """labels - offset looked up in `table`; anything outside it -> VOID_LABEL."""
  lut = np.full(256, VOID_LABEL, np.uint8)
  for value, mapped in enumerate(table):
    if 0 <= value + offset < 256:
      lut[value + offset] = mapped
  return lut[labels.astype(np.int64).clip(0, 255)] if labels.size else labels.astype(np.uint8)


def _read_pairs(images: Sequence[Path], labels: Sequence[Path], size, table, offset, classes,
                source) -> ArrayDataset:
  missing = [p for p in list(images) + list(labels) if not p.is_file()]
  if missing:
    _missing(source, missing)
  x = sources.stack_images([sources.decode_image(str(p), 'RGB', size) for p in images],
                           [p.name for p in images])
  y = []
  for p in labels:
    with Image.open(p) as im:
      if size is not None and im.size != (size[1], size[0]):
        im = im.resize((size[1], size[0]), Image.NEAREST)
      y.append(_remap(np.asarray(im), table, offset))
  return ArrayDataset(x, np.stack(y), classes, source=source)


def read_cocostuff27(root: Path, split: str, size=None,
                     image_list: str = 'curated') -> ArrayDataset:
  """COCO-Stuff-27 (PiCIE / STEGO): `cocostuff/images/<train2017|val2017>/<id>.jpg`,
  `cocostuff/annotations/<dir>/<id>.png` (stuffthingmaps: fine ids 0..181, 255 unlabelled) and,
  with image_list='curated', the curated list
  `cocostuff/curated/<dir>/Coco164kFull_Stuff_Coarse_7.txt` (IIC's, as PiCIE / STEGO use it);
  image_list='all' takes every image of the folder. Labels: the 27 coarse classes."""
  split_dir = COCO_SPLIT_DIRS[split]
  if image_list == 'curated':
    listing = root / 'curated' / split_dir / 'Coco164kFull_Stuff_Coarse_7.txt'
    if not listing.is_file():
      _missing(f'COCO-Stuff-27 ({split})', [listing])
    ids = [line.strip() for line in listing.read_text().splitlines() if line.strip()]
  else:
    folder = root / 'images' / split_dir
    if not folder.is_dir():
      _missing(f'COCO-Stuff-27 ({split})', [folder])
    ids = sorted(p.stem for p in folder.glob('*.jpg'))
  return _read_pairs([root / 'images' / split_dir / f'{i}.jpg' for i in ids],
                     [root / 'annotations' / split_dir / f'{i}.png' for i in ids], size,
                     COCO_FINE_TO_27, 0, COCO27_CLASSES, f'COCO-Stuff-27 {root} ({split})')


def read_cityscapes27(root: Path, split: str, size=None) -> ArrayDataset:
  """Cityscapes-27 (PiCIE / STEGO): `cityscapes/leftImg8bit/<split>/<city>/*_leftImg8bit.png`
  and `cityscapes/gtFine/<split>/<city>/*_gtFine_labelIds.png`; labelIds 7..33 -> 0..26."""
  folder = root / 'leftImg8bit' / split
  images = sorted(folder.glob('*/*_leftImg8bit.png'))
  if not images:
    _missing(f'Cityscapes-27 ({split})', [folder / '<city>' / '<name>_leftImg8bit.png'])
  labels = [root / 'gtFine' / split / p.parent.name /
            p.name.replace('_leftImg8bit.png', '_gtFine_labelIds.png') for p in images]
  return _read_pairs(images, labels, size, range(len(CITYSCAPES27_CLASSES)),
                     CITYSCAPES_FIRST_CLASS_ID, CITYSCAPES27_CLASSES,
                     f'Cityscapes-27 {root} ({split})')


def read_potsdam(root: Path, split: str, size=None, coarse: bool = False) -> ArrayDataset:
  """Potsdam (IIC's tiles, STEGO's layout): `potsdam/imgs/<id>.mat` (key 'img', IRRG+ channels;
  the first three are kept), `potsdam/gt/<id>.mat` (key 'gt', 0..5) and the split lists
  `labelled_train.txt` (train), `labelled_test.txt` (val), `unlabelled_train.txt`, `all.txt`.
  coarse=True: Potsdam-3 (roads+cars, buildings+clutter, vegetation+trees)."""
  from scipy.io import loadmat  # pylint: disable=import-outside-toplevel
  lists = [root / name for name in POTSDAM_SPLIT_FILES[split]]
  if not all(p.is_file() for p in lists):
    _missing(f'Potsdam ({split})', lists)
  ids = [line.strip() for p in lists for line in p.read_text().splitlines() if line.strip()]
  paths = [(root / 'imgs' / f'{i}.mat', root / 'gt' / f'{i}.mat') for i in ids]
  missing = [p for pair in paths for p in pair if not p.is_file()]
  if missing:
    _missing(f'Potsdam ({split})', missing)
  images, labels = [], []
  for image_path, label_path in paths:
    image = np.asarray(loadmat(image_path)['img'])[..., :3]
    if image.dtype != np.uint8:  # Stored as floats in [0, 1] or [0, 255]: to uint8.
      image = np.clip(np.round(image * (255.0 if image.max() <= 1.0 else 1.0)), 0, 255)
      image = image.astype(np.uint8)
    label = np.asarray(loadmat(label_path)['gt'])
    if size is not None and image.shape[:2] != tuple(size):
      image = sources.resize_array(image, size)
      label = sources.resize_array(label.astype(np.uint8), size, Image.NEAREST)
    images.append(image)
    labels.append(_remap(label, POTSDAM_6_TO_3 if coarse else range(6)))
  return ArrayDataset(np.stack(images), np.stack(labels),
                      POTSDAM3_CLASSES if coarse else POTSDAM6_CLASSES,
                      source=f'Potsdam{"-3" if coarse else ""} {root} ({split})')
