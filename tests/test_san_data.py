"""SAN's data: the texture-region set, the resized view, and the COCO-Stuff-27 / Cityscapes-27 /
Potsdam loaders on tiny fake trees in their published layouts."""

import numpy as np
import pytest
from PIL import Image

from jaxcv.data import load_dataset
from jaxcv.errors import DatasetNotFoundError
from jaxcv.segmentation import datasets


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
  monkeypatch.setenv('JAXCV_CACHE_DIR', str(tmp_path / 'cache'))


def test_texture_regions_are_deterministic_and_textured():
  a = load_dataset('texture_regions(n=6,side=32,classes=4)', 'train')
  b = load_dataset('texture_regions(n=6,side=32,classes=4)', 'train')
  val = load_dataset('texture_regions(n=6,side=32,classes=4)', 'val')
  assert a.images.shape == (6, 32, 32, 3) and a.labels.shape == (6, 32, 32)
  np.testing.assert_array_equal(a.images, b.images)
  assert not np.array_equal(a.images, val.images)
  assert set(np.unique(a.labels)) <= set(range(4)) and len(a.class_names) == 4
  # Textured: every region varies inside (a flat colour would make the task trivial by colour).
  for image, label in zip(a.images, a.labels):
    for cls in np.unique(label):
      assert image[label == cls].std() > 5


def test_resized_view_keeps_labels_valid():
  data = load_dataset('resized(height=24,width=40):texture_regions(n=3,side=32)', 'test')
  assert data.images.shape == (3, 24, 40, 3) and data.labels.shape == (3, 24, 40)
  assert set(np.unique(data.labels)) <= set(range(6))  # Nearest neighbour: no blended ids.


# STEGO's other transcription of the 27 classes (src/data.py `cocostuff_to_27_classes`): fine ids
# grouped per coarse class, in another class order. Our map must be the same partition.
STEGO_GROUPS = [
    [0], [1, 2, 3, 4, 5, 6, 7, 8], [9, 10, 11, 12, 13, 14],
    [15, 16, 17, 18, 19, 20, 21, 22, 23, 24],
    [25, 26, 27, 28, 29, 30, 31, 32], [33, 34, 35, 36, 37, 38, 39, 40, 41, 42],
    [43, 44, 45, 46, 47, 48, 49, 50], [51, 52, 53, 54, 55, 56, 57, 58, 59, 60],
    [61, 62, 63, 64, 65, 66, 67, 68, 69, 70], [71, 72, 73, 74, 75, 76], [77, 78, 79, 80, 81, 82],
    [83, 84, 85, 86, 87, 88, 89, 90], [119, 147, 154, 177, 178],
    [110, 124, 125, 135, 139, 143, 144, 146, 148, 153, 158], [126, 134, 149, 159, 161, 181],
    [105, 156], [93, 96, 118, 123, 128, 133, 141, 162, 168], [98, 112, 137, 145, 163],
    [94, 95, 127, 150, 157, 165], [120, 121, 152, 169],
    [91, 92, 103, 104, 108, 130, 136, 140, 151, 166, 167],
    [97, 106, 107, 109, 111, 122, 129, 132, 155, 160, 164], [179, 180],
    [100, 113, 114, 115, 116, 117], [101, 102], [170, 171, 172, 173, 174, 175, 176],
    [99, 131, 138, 142]]


def test_coco_fine_to_coarse_is_stegos_partition():
  table = np.asarray(datasets.COCO_FINE_TO_27)
  assert sorted(i for g in STEGO_GROUPS for i in g) == list(range(182))
  coarse = [set(table[g]) for g in STEGO_GROUPS]
  assert all(len(c) == 1 for c in coarse)
  assert sorted(c.pop() for c in coarse) == list(range(27))
  assert datasets.COCO27_CLASSES[table[0]] == 'person'
  assert datasets.COCO27_CLASSES[table[105]] == 'sky'  # 105 = sky-other (stuff).


def _png(path, array):
  path.parent.mkdir(parents=True, exist_ok=True)
  Image.fromarray(np.asarray(array, np.uint8)).save(path)


def test_cocostuff27_reads_the_curated_layout(tmp_path):
  root = tmp_path / 'cocostuff'
  fine = np.array([[0, 105, 255, 181], [9, 9, 119, 60]], np.uint8)
  for i, name in enumerate(('000000000139', '000000000285')):
    _png(root / 'images' / 'val2017' / f'{name}.jpg', np.full((2, 4, 3), 40 * i))
    _png(root / 'annotations' / 'val2017' / f'{name}.png', fine)
  with pytest.raises(DatasetNotFoundError, match='Coco164kFull_Stuff_Coarse_7.txt'):
    load_dataset('cocostuff27', 'val', tmp_path)
  (root / 'curated' / 'val2017').mkdir(parents=True)
  (root / 'curated' / 'val2017' / 'Coco164kFull_Stuff_Coarse_7.txt').write_text(
      '000000000285\n000000000139\n')
  data = load_dataset('cocostuff27', 'val', tmp_path)
  assert data.images.shape == (2, 2, 4, 3) and data.num_classes == 27
  assert data.images[0].mean() == 40  # The list's order: 285 first.
  expected = np.array([[9, 23, 255, 24], [8, 8, 26, 2]])
  np.testing.assert_array_equal(data.labels[0], expected)
  all_images = load_dataset('cocostuff27(image_list="all")', 'val', tmp_path)
  assert all_images.images[0].mean() == 0  # Sorted by id: 139 first.


def test_cityscapes27_maps_label_ids(tmp_path):
  root = tmp_path / 'cityscapes'
  ids = np.array([[0, 6, 7, 8], [33, 26, 34, 255]], np.uint8)
  _png(root / 'leftImg8bit' / 'val' / 'lindau' / 'lindau_000000_000019_leftImg8bit.png',
       np.full((2, 4, 3), 9))
  _png(root / 'gtFine' / 'val' / 'lindau' / 'lindau_000000_000019_gtFine_labelIds.png', ids)
  data = load_dataset('cityscapes27', 'val', tmp_path)
  np.testing.assert_array_equal(data.labels[0], [[255, 255, 0, 1], [26, 19, 255, 255]])
  assert data.class_names[0] == 'road' and data.class_names[19] == 'car'
  with pytest.raises(DatasetNotFoundError, match='leftImg8bit'):
    load_dataset('cityscapes27', 'train', tmp_path)


def test_potsdam_reads_mat_tiles_and_merges_to_three(tmp_path):
  from scipy.io import savemat
  root = tmp_path / 'potsdam'
  (root / 'imgs').mkdir(parents=True)
  (root / 'gt').mkdir()
  gt = np.array([[0, 1, 2], [3, 4, 5]], np.uint8)
  for name in ('a', 'b'):
    savemat(root / 'imgs' / f'{name}.mat', {'img': np.full((2, 3, 4), 0.5, np.float32)})
    savemat(root / 'gt' / f'{name}.mat', {'gt': gt})
  with pytest.raises(DatasetNotFoundError, match='labelled_train.txt'):
    load_dataset('potsdam', 'train', tmp_path)
  (root / 'labelled_train.txt').write_text('a\nb\n')
  six = load_dataset('potsdam', 'train', tmp_path)
  assert six.images.shape == (2, 2, 3, 3) and six.images.max() == 128
  np.testing.assert_array_equal(six.labels[0], gt)
  three = load_dataset('potsdam(coarse=True)', 'train', tmp_path)
  np.testing.assert_array_equal(three.labels[0], [[0, 1, 2], [2, 0, 1]])
  assert three.class_names == datasets.POTSDAM3_CLASSES
