"""Dataset readers (sources.py), the decode cache (cache.py) and named datasets (registry.py).

Format tests write tiny datasets to tmp_path (PNG, so pixels must match exactly). The real-data
tests read ../shared/data (or $JAXCV_TEST_DATA_DIR) through `load_dataset`, once per module, using
the normal decode cache ($JAXCV_CACHE_DIR or ~/.cache/jaxcv) so that repeated runs are fast; they
skip when the folder is absent.
"""

from __future__ import annotations

import gzip
import pickle
import struct
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from jaxcv.data import cache
from jaxcv.data import registry
from jaxcv.data import sources
from jaxcv.data.registry import load_dataset
from jaxcv.errors import ConfigError, DatasetNotFoundError, UserError

REPO = Path(__file__).resolve().parents[1]
CIFAR10_CLASSES = ['airplane', 'automobile', 'bird', 'cat', 'deer', 'dog', 'frog', 'horse', 'ship',
                   'truck']


@pytest.fixture
def tmp_cache(tmp_path, monkeypatch) -> Path:
  """A private, empty decode cache for the test."""
  path = tmp_path / 'cache'
  monkeypatch.setenv('JAXCV_CACHE_DIR', str(path))
  return path


def _images(n: int, h: int = 6, w: int = 5, c: int = 3, seed: int = 0) -> np.ndarray:
  return np.random.default_rng(seed).integers(0, 256, (n, h, w, c), dtype=np.uint8)


def _save(path: Path, image: np.ndarray) -> None:
  path.parent.mkdir(parents=True, exist_ok=True)
  Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image).save(path)


# Files named so that numeric order (0, 1, 2, 10) differs from name order (0, 1, 10, 2).
_STEMS = ('10', '0', '2', '1')
_NUMERIC = ('0', '1', '2', '10')


def _write_classes(root: Path, classes: dict[str, np.ndarray]) -> None:
  """root/<class>/<k>.png with k in _NUMERIC order matching the rows of each array."""
  for name, images in classes.items():
    for stem, image in zip(_NUMERIC, images):
      _save(root / name / f'{stem}.png', image)


def _tar_dir(src: Path, out: Path, arcname: str) -> Path:
  with tarfile.open(out, 'w:gz' if out.name.endswith('gz') else 'w') as tar:
    tar.add(src, arcname=arcname)
  return out


@pytest.fixture
def class_tree(tmp_path):
  """An ImageFolder tree of three classes (written in unsorted order) and the expected result."""
  classes = {'dog': _images(4, seed=1), 'ant': _images(4, seed=2), 'cat': _images(4, seed=3)}
  root = tmp_path / 'tree'
  _write_classes(root, classes)
  (root / 'cat' / '.hidden.png').write_bytes(b'not an image')
  (root / 'cat' / 'notes.txt').write_text('ignored')
  expected = np.concatenate([classes[c] for c in ('ant', 'cat', 'dog')])
  return root, expected


# ---------------------------------------------------------------------------------------------
# Image folders and archives
# ---------------------------------------------------------------------------------------------

def test_image_folder_round_trip_sorted_numerically(class_tree):
  root, expected = class_tree
  ds = sources.read_image_folder(root)
  assert ds.class_names == ['ant', 'cat', 'dog']
  np.testing.assert_array_equal(ds.labels, np.repeat(np.arange(3), 4))
  assert ds.labels.dtype == np.int32 and ds.images.dtype == np.uint8
  np.testing.assert_array_equal(ds.images, expected)  # 10.png last within each class


def test_name_order_when_stems_are_not_numbers(tmp_path):
  images = _images(3)
  for stem, image in zip(('b', 'a', 'c'), images):
    _save(tmp_path / 'x' / f'{stem}.png', image)
  np.testing.assert_array_equal(sources.read_image_folder(tmp_path).images, images[[1, 0, 2]])


def test_greyscale_folder_stays_one_channel_and_mixed_becomes_rgb(tmp_path):
  grey = _images(2, c=1)
  _write_classes(tmp_path / 'g', {'a': grey})
  ds = sources.read_image_folder(tmp_path / 'g')
  assert ds.image_shape == (6, 5, 1)
  np.testing.assert_array_equal(ds.images, grey)
  colour = _images(2, seed=5)
  _write_classes(tmp_path / 'm', {'a': grey, 'b': colour})
  mixed = sources.read_image_folder(tmp_path / 'm')
  np.testing.assert_array_equal(mixed.images, np.concatenate([np.repeat(grey, 3, -1), colour]))
  forced = sources.read_image_folder(tmp_path / 'g', mode='RGB')
  assert forced.image_shape == (6, 5, 3)


def test_mixed_sizes_need_image_size(tmp_path):
  _save(tmp_path / 'a' / '0.png', _images(1, 6, 5)[0])
  _save(tmp_path / 'a' / '1.png', _images(1, 9, 7)[0])
  with pytest.raises(UserError, match='different sizes.*image_size'):
    sources.read_image_folder(tmp_path)
  ds = sources.read_image_folder(tmp_path, image_size=(4, 8))
  assert ds.image_shape == (4, 8, 3)
  assert sources.read_image_folder(tmp_path, image_size=3).image_shape == (3, 3, 3)


def test_image_tar_round_trip_with_prefix(tmp_path, class_tree):
  root, expected = class_tree
  data = tmp_path / 'data'
  _write_classes(data / 'test', {'zebra': _images(2, seed=9)})
  archive = tmp_path / 'data.tar.gz'
  with tarfile.open(archive, 'w:gz') as tar:
    tar.add(root, arcname='data/train')
    tar.add(data / 'test', arcname='data/test')
  ds = sources.read_image_tar(archive, 'data/train')
  assert ds.class_names == ['ant', 'cat', 'dog']
  np.testing.assert_array_equal(ds.images, expected)
  np.testing.assert_array_equal(ds.labels, np.repeat(np.arange(3), 4))
  assert sources.read_image_tar(archive, 'data/test/').class_names == ['zebra']
  with pytest.raises(DatasetNotFoundError, match='data/train'):
    sources.read_image_tar(archive, 'data/val')
  # An uncompressed tar whose root is the class folders.
  plain = _tar_dir(root, tmp_path / 'plain.tar', '.')
  np.testing.assert_array_equal(sources.read_image_tar(plain, '').images, expected)


def test_list_image_folder_and_lazy_source(class_tree):
  root, expected = class_tree
  paths, labels, class_names = sources.list_image_folder(root)
  assert class_names == ['ant', 'cat', 'dog'] and len(paths) == 12
  assert Path(paths[3]).name == '10.png'
  source = sources.ImageFileSource(paths, labels)
  assert len(source) == 12
  example = source[5]
  np.testing.assert_array_equal(example['image'], expected[5])
  assert example['label'] == 1 and isinstance(example['label'], int)
  assert sources.ImageFileSource(paths, labels, image_size=4)[0]['image'].shape == (4, 4, 3)


# ---------------------------------------------------------------------------------------------
# DomainBed
# ---------------------------------------------------------------------------------------------

@pytest.fixture
def domain_tree(tmp_path):
  root = tmp_path / 'DOM'
  data = {}
  for i, domain in enumerate(('sketch', 'art')):  # Written unsorted on purpose.
    data[domain] = {'b': _images(2, seed=10 + i), 'a': _images(3, seed=20 + i)}
    _write_classes(root / domain, data[domain])
  return root, data


def _check_domains(ds, data):
  assert ds.domain_names == ['art', 'sketch'] and ds.class_names == ['a', 'b']
  np.testing.assert_array_equal(ds.domains, [0] * 5 + [1] * 5)
  np.testing.assert_array_equal(ds.labels, [0, 0, 0, 1, 1] * 2)
  expected = np.concatenate([data[d][c] for d in ('art', 'sketch') for c in ('a', 'b')])
  np.testing.assert_array_equal(ds.images, expected)


def test_domainbed_folder_and_tar(tmp_path, domain_tree):
  root, data = domain_tree
  _check_domains(sources.read_domainbed(root), data)
  archive = _tar_dir(root, tmp_path / 'dom.tar.gz', 'DOM')
  _check_domains(sources.read_domainbed(archive), data)
  only = sources.read_domainbed(archive, domains=['sketch'])
  assert only.domain_names == ['art', 'sketch']  # Ids stay global.
  np.testing.assert_array_equal(only.domains, [1] * 5)
  with pytest.raises(DatasetNotFoundError, match='photo'):
    sources.read_domainbed(root, domains=['photo'])


def test_domainbed_classes_must_agree(domain_tree):
  root, _ = domain_tree
  _save(root / 'art' / 'c' / '0.png', _images(1)[0])
  with pytest.raises(UserError, match='disagree on classes'):
    sources.read_domainbed(root)


# ---------------------------------------------------------------------------------------------
# idx, CIFAR pickles, npz
# ---------------------------------------------------------------------------------------------

def _write_idx(path: Path, array: np.ndarray, compress: bool) -> None:
  header = struct.pack('>BBBB', 0, 0, 0x08, array.ndim) + struct.pack(f'>{array.ndim}I',
                                                                      *array.shape)
  data = header + array.astype(np.uint8).tobytes()
  path.write_bytes(gzip.compress(data) if compress else data)


@pytest.mark.parametrize('compress', [True, False])
def test_mnist_idx_round_trip(tmp_path, compress):
  ext = '.gz' if compress else ''
  rng = np.random.default_rng(0)
  data = {}
  for prefix, n in (('train', 7), ('t10k', 3)):
    images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, n).astype(np.uint8)
    _write_idx(tmp_path / f'{prefix}-images-idx3-ubyte{ext}', images, compress)
    _write_idx(tmp_path / f'{prefix}-labels-idx1-ubyte{ext}', labels, compress)
    data[prefix] = images, labels
  for split, prefix in (('train', 'train'), ('test', 't10k')):
    ds = sources.read_mnist_idx(tmp_path, split)
    assert ds.image_shape == (28, 28, 1) and ds.class_names == sources.MNIST_CLASSES
    np.testing.assert_array_equal(ds.images[..., 0], data[prefix][0])
    np.testing.assert_array_equal(ds.labels, data[prefix][1])
    assert ds.labels.dtype == np.int32
  fashion = sources.read_mnist_idx(tmp_path, 'test', sources.FASHION_MNIST_CLASSES)
  assert fashion.class_names[9] == 'Ankle boot'
  with pytest.raises(DatasetNotFoundError, match='t10k-images-idx3-ubyte'):
    sources.read_mnist_idx(tmp_path / 'nothing', 'test')


def test_registry_finds_idx_files(tmp_path):
  for folder in (tmp_path, tmp_path / 'fashion-mnist'):
    folder.mkdir(exist_ok=True)
    for prefix in ('train', 't10k'):
      _write_idx(folder / f'{prefix}-images-idx3-ubyte.gz', _images(2, 28, 28, 1)[..., 0], True)
      _write_idx(folder / f'{prefix}-labels-idx1-ubyte.gz', np.array([3, 9]), True)
  mnist = load_dataset('mnist', 'test', tmp_path)  # idx files directly in data_dir
  assert mnist.class_names[3] == '3' and mnist.labels.tolist() == [3, 9]
  fashion = load_dataset('fashion_mnist', 'train', tmp_path, image_size=14)
  assert fashion.class_names[9] == 'Ankle boot' and fashion.image_shape == (14, 14, 1)


def _pickle(obj) -> bytes:
  return pickle.dumps(obj, protocol=2)


def _cifar_blobs(hundred: bool, rng) -> tuple[dict[str, bytes], dict[str, tuple]]:
  """The official files' contents (bytes keys, like Python 2's cPickle), and the expected data."""
  names = [f'c{i}'.encode() for i in range(10 if not hundred else 100)]
  splits = {'train': ['train'] if hundred else [f'data_batch_{i}' for i in range(1, 6)],
            'test': ['test'] if hundred else ['test_batch']}
  label_key = b'fine_labels' if hundred else b'labels'
  blobs, expected = {}, {}
  for split, files in splits.items():
    parts = []
    for f in files:
      images = rng.integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
      labels = rng.integers(0, len(names), 4)
      data = images.transpose(0, 3, 1, 2).reshape(4, 3072)  # Rows are R, G, B planes.
      blobs[f] = _pickle({b'data': data, label_key: labels.tolist(), b'batch_label': b'x'})
      parts.append((images, labels))
    expected[split] = tuple(np.concatenate(p) for p in zip(*parts))
  meta_key = b'fine_label_names' if hundred else b'label_names'
  blobs['meta' if hundred else 'batches.meta'] = _pickle({meta_key: names})
  return blobs, expected


@pytest.mark.parametrize('hundred', [False, True])
def test_cifar_pickles_folder_and_tarball(tmp_path, hundred):
  top = 'cifar-100-python' if hundred else 'cifar-10-batches-py'
  blobs, expected = _cifar_blobs(hundred, np.random.default_rng(1))
  (tmp_path / top).mkdir()
  for name, blob in blobs.items():
    (tmp_path / top / name).write_bytes(blob)
  archive = _tar_dir(tmp_path / top, tmp_path / f'{top}.tar.gz', top)
  for path in (tmp_path / top, tmp_path, archive):
    for split in ('train', 'test'):
      ds = sources.read_cifar_python(path, split)
      np.testing.assert_array_equal(ds.images, expected[split][0])
      np.testing.assert_array_equal(ds.labels, expected[split][1])
      assert ds.class_names[:2] == ['c0', 'c1'] and ds.num_classes == (100 if hundred else 10)


def test_cifar_pickle_loader_refuses_code(tmp_path):
  (tmp_path / 'batches.meta').write_bytes(pickle.dumps({'label_names': []}))
  (tmp_path / 'test_batch').write_bytes(pickle.dumps({'data': subprocess.Popen}))
  with pytest.raises(sources.DatasetFormatError, match='test_batch.*refusing'):
    sources.read_cifar_python(tmp_path, 'test')


def test_npz_variants(tmp_path):
  images, labels = _images(5), np.array([0, 2, 1, 2, 0])
  np.savez(tmp_path / 'a.npz', images=images, labels=labels, class_names=np.array(['x', 'y', 'z']))
  ds = sources.read_npz(tmp_path / 'a.npz')
  np.testing.assert_array_equal(ds.images, images)
  np.testing.assert_array_equal(ds.labels, labels)
  assert ds.class_names == ['x', 'y', 'z'] and ds.labels.dtype == np.int32
  np.savez(tmp_path / 'b.npz', x=images[..., 0], y=labels)  # Greyscale NHW, x/y keys.
  ds = sources.read_npz(tmp_path / 'b.npz')
  assert ds.image_shape == (6, 5, 1) and ds.class_names == ['0', '1', '2']
  np.savez(tmp_path / 'c.npz', images=images / 255.0, labels=labels)
  with pytest.raises(UserError, match='0..255'):
    sources.read_npz(tmp_path / 'c.npz')


# ---------------------------------------------------------------------------------------------
# Segmentation
# ---------------------------------------------------------------------------------------------

def _write_segmentation(root: Path, split: str, n: int, segnet: bool = False):
  rng = np.random.default_rng(len(split))
  images = _images(n, 6, 8, seed=n)
  labels = rng.integers(0, 12, (n, 6, 8)).astype(np.uint8)
  image_dir, label_dir = ((root / split, root / f'{split}annot') if segnet else
                          (root / split / 'images', root / split / 'labels'))
  for i, stem in enumerate(('f10', 'f2', 'f33')[:n]):
    _save(image_dir / f'{stem}.png', images[i])
    _save(label_dir / f'{stem}.png', labels[i][..., None])
  order = np.argsort([int(s[1:]) for s in ('f10', 'f2', 'f33')[:n]])
  return images[order], labels[order]


def test_segmentation_folder_tar_and_segnet_layout(tmp_path):
  root = tmp_path / 'camvid'
  expected = {s: _write_segmentation(root, s, n) for s, n in (('train', 3), ('val', 2))}
  archive = _tar_dir(root, tmp_path / 'camvid.tar.gz', 'camvid')
  for path in (root, archive):
    for split, (images, labels) in expected.items():
      ds = sources.read_segmentation_folder(path, split)
      np.testing.assert_array_equal(ds.images, images)
      np.testing.assert_array_equal(ds.labels, labels)
      assert ds.labels.dtype == np.int32 and ds.ignore_index == 11
      assert ds.class_names[0] == 'Sky' and ds.class_names[3] == 'Road' and ds.num_classes == 11
  images, labels = _write_segmentation(tmp_path / 'CamVid', 'test', 2, segnet=True)
  ds = sources.read_segmentation_folder(tmp_path / 'CamVid', 'test')
  np.testing.assert_array_equal(ds.labels, labels)
  small = sources.read_segmentation_folder(root, 'train', image_size=(3, 4))
  assert small.images.shape == (3, 3, 4, 3) and small.labels.shape == (3, 3, 4)
  assert set(np.unique(small.labels)) <= set(np.unique(expected['train'][1]))  # Nearest only.
  (root / 'val' / 'labels' / 'f2.png').unlink()
  with pytest.raises(DatasetNotFoundError, match='no label map'):
    sources.read_segmentation_folder(root, 'val')


# ---------------------------------------------------------------------------------------------
# Synthetic data and array resizing
# ---------------------------------------------------------------------------------------------

def test_synthetic_is_deterministic_and_learnable():
  train = sources.synthetic(600, (16, 16, 3), num_classes=6, seed=0)
  again = sources.synthetic(600, (16, 16, 3), num_classes=6, seed=0)
  test = sources.synthetic(300, (16, 16, 3), num_classes=6, seed=1)
  np.testing.assert_array_equal(train.images, again.images)
  assert not np.array_equal(train.images[:300], test.images)
  np.testing.assert_array_equal(np.bincount(train.labels), [100] * 6)
  # Class means from train classify the test split: the classes are learnable, not noise.
  means = np.stack([train.images[train.labels == k].mean(0) for k in range(6)]).reshape(6, -1)
  x = test.images.reshape(len(test), -1).astype(np.float32)
  predicted = np.argmin(((x[:, None, :] - means[None]) ** 2).sum(-1), axis=1)
  assert (predicted == test.labels).mean() > 0.95
  assert sources.synthetic(4, (28, 28, 1), 2).image_shape == (28, 28, 1)


def test_resize_arrays():
  ds = sources.synthetic(3, (8, 8, 1), 2)
  assert sources.resize(ds, 8) is ds
  assert sources.resize(ds, (4, 6)).image_shape == (4, 6, 1)


# ---------------------------------------------------------------------------------------------
# tfds (installed here, but nothing is prepared and nothing may be downloaded)
# ---------------------------------------------------------------------------------------------

def test_tfds_not_prepared_is_a_clear_error(tmp_path):
  with pytest.raises(DatasetNotFoundError, match=r'mnist.*tfds build mnist --data_dir') as e:
    sources.read_tfds('mnist', 'train', data_dir=tmp_path)
  assert str(tmp_path) in str(e.value)
  assert list(tmp_path.iterdir()) == []  # Nothing downloaded or created.
  with pytest.raises(DatasetNotFoundError, match='not available'):
    load_dataset('tfds:no_such_dataset_xyz', 'train', data_dir=tmp_path)


def test_tfds_absent_is_a_clear_error(tmp_path, monkeypatch):
  monkeypatch.setitem(sys.modules, 'tensorflow_datasets', None)  # Makes the import fail.
  with pytest.raises(DatasetNotFoundError, match='not installed'):
    sources.tfds_random_access_source('cifar10', 'train', tmp_path)


def test_tfds_materialises_a_data_source(tmp_path, monkeypatch):
  tfds = pytest.importorskip('tensorflow_datasets')
  monkeypatch.setattr(sources, '_tfds_is_prepared', lambda *args: True)
  with tfds.testing.mock_data(num_examples=6, policy=tfds.testing.MockPolicy.USE_CODE):
    ds = sources.read_tfds('mnist', 'train', data_dir=tmp_path)
  assert ds.images.shape == (6, 28, 28, 1) and ds.images.dtype == np.uint8
  assert ds.labels.dtype == np.int32 and ds.class_names == list(sources.MNIST_CLASSES)


# ---------------------------------------------------------------------------------------------
# The registry
# ---------------------------------------------------------------------------------------------

def test_registry_order_and_formats(tmp_path, tmp_cache, class_tree, monkeypatch):
  root, expected = class_tree
  # Only the official pickles at first: cifar10 is read from them.
  blobs, data = _cifar_blobs(False, np.random.default_rng(2))
  (tmp_path / 'cifar-10-batches-py').mkdir()
  for name, blob in blobs.items():
    (tmp_path / 'cifar-10-batches-py' / name).write_bytes(blob)
  ds = load_dataset('cifar10', 'test', data_dir=tmp_path)
  np.testing.assert_array_equal(ds.images, data['test'][0])
  # A JPEG-tree archive comes earlier in the search order, so it now wins.
  with tarfile.open(tmp_path / 'cifar10-jpeg.tar.gz', 'w:gz') as tar:
    tar.add(root, arcname='cifar10/test')
  ds = load_dataset('cifar10', 'test', data_dir=tmp_path)
  np.testing.assert_array_equal(ds.images, expected)
  assert 'cifar10-jpeg.tar.gz' in ds.source
  assert load_dataset('cifar10', 'test', tmp_path, image_size=4).image_shape == (4, 4, 3)
  # The environment variable stands in for data_dir.
  monkeypatch.setenv('JAXCV_DATA_DIR', str(tmp_path))
  assert len(load_dataset('cifar10', 'test')) == 12


def test_registry_generic_forms(tmp_path, tmp_cache, class_tree):
  root, expected = class_tree
  np.testing.assert_array_equal(load_dataset(f'folder:{root}', 'all').images, expected)
  (tmp_path / 'split').mkdir()
  (tmp_path / 'split' / 'train').symlink_to(root)
  np.testing.assert_array_equal(load_dataset('folder:split', 'train', tmp_path).images, expected)
  with pytest.raises(DatasetNotFoundError, match='not a folder'):
    load_dataset(f'folder:{tmp_path / "split"}', 'test')
  archive = _tar_dir(root, tmp_path / 'a.tar.gz', 'top/train')
  np.testing.assert_array_equal(load_dataset(f'tar:{archive}::top', 'train').images, expected)
  np.testing.assert_array_equal(load_dataset(f'tar:{archive}::top/train', 'all').labels,
                                np.repeat(np.arange(3), 4))
  np.savez(tmp_path / 'train.npz', images=expected, labels=np.zeros(12, np.int32))
  assert len(load_dataset(f'npz:{tmp_path}', 'train')) == 12
  assert len(load_dataset(f'npz:{tmp_path}/{{split}}.npz', 'train')) == 12
  with pytest.raises(DatasetNotFoundError, match='single file'):
    load_dataset(f'npz:{tmp_path / "train.npz"}', 'test')
  syn = load_dataset('synthetic:n=40,size=8,classes=4,channels=1', 'train')
  assert syn.images.shape == (40, 8, 8, 1) and syn.num_classes == 4
  assert not np.array_equal(syn.images, load_dataset('synthetic:n=40,size=8,classes=4,channels=1',
                                                     'test').images)
  assert load_dataset('synthetic', 'test', image_size=(6, 10)).images.shape == (1024, 6, 10, 3)
  with pytest.raises(ConfigError, match='bad synthetic option'):
    load_dataset('synthetic:n=3,colour=2', 'train')


def test_missing_dataset_names_every_path_tried(tmp_path):
  with pytest.raises(DatasetNotFoundError) as e:
    load_dataset('cifar10', 'train', data_dir=tmp_path)
  message = str(e.value)
  for expected in ('cifar10/train', 'cifar10-jpeg.tar.gz', 'cifar-10-batches-py',
                   'cifar-10-python.tar.gz', "tfds-prepared 'cifar10'",
                   'https://www.cs.toronto.edu/~kriz/cifar.html', str(tmp_path)):
    assert expected in message
  assert '\n' not in message
  with pytest.raises(DatasetNotFoundError, match='train-images-idx3'):
    load_dataset('mnist', 'train', data_dir=tmp_path)
  with pytest.raises(DatasetNotFoundError, match='pacs-96.tar.gz'):
    load_dataset('pacs', 'photo', data_dir=tmp_path)


def test_unknown_name_split_and_no_data_dir(monkeypatch):
  with pytest.raises(DatasetNotFoundError, match='known: camvid, cifar10, cifar100.*synthetic'):
    load_dataset('imagenet21k', 'train', data_dir='/nonexistent')
  with pytest.raises(DatasetNotFoundError, match='no split .val.*train, test'):
    load_dataset('cifar10', 'val', data_dir='/nonexistent')
  monkeypatch.delenv('JAXCV_DATA_DIR', raising=False)
  with pytest.raises(DatasetNotFoundError, match='pass data_dir.*JAXCV_DATA_DIR'):
    load_dataset('cifar10', 'train')
  assert set(registry.DATASETS) <= set(registry.known_datasets())


# ---------------------------------------------------------------------------------------------
# The decode cache
# ---------------------------------------------------------------------------------------------

def _assert_same(a, b):
  for field in ('images', 'labels', 'domains'):
    np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
  assert list(a.class_names) == list(b.class_names) and a.source == b.source
  assert a.ignore_index == b.ignore_index and a.domain_names == b.domain_names


def test_cache_hit_corruption_and_invalidation(tmp_path, tmp_cache, domain_tree, monkeypatch):
  root, _ = domain_tree
  (tmp_path / 'PACS').symlink_to(root)
  first = load_dataset('pacs', 'all', tmp_path)
  entries = list(tmp_cache.glob('*.npz'))
  assert len(entries) == 1 and not list(tmp_cache.glob('*.tmp*'))

  calls = []
  real = sources.read_domainbed
  monkeypatch.setattr(sources, 'read_domainbed', lambda *a, **k: calls.append(1) or real(*a, **k))
  _assert_same(load_dataset('pacs', 'all', tmp_path), first)
  assert not calls  # Served from the cache.

  entries[0].write_bytes(entries[0].read_bytes()[:1000])  # Truncate: a corrupt entry.
  _assert_same(load_dataset('pacs', 'all', tmp_path), first)
  assert len(calls) == 1
  _assert_same(cache.load(entries[0]), first)  # ... and rewritten whole.

  _save(root / 'art' / 'a' / '7.png', _images(1)[0])  # A changed source is decoded afresh.
  assert len(load_dataset('pacs', 'all', tmp_path)) == 11 and len(calls) == 2


def test_cache_keeps_segmentation_fields(tmp_path, tmp_cache):
  _write_segmentation(tmp_path / 'camvid', 'val', 2)
  first = load_dataset('camvid', 'val', tmp_path)
  _assert_same(load_dataset('camvid', 'val', tmp_path), first)
  assert len(list(tmp_cache.glob('camvid-val-*.npz'))) == 1


def test_unwritable_cache_only_disables_caching(tmp_path, monkeypatch, class_tree):
  root, expected = class_tree
  blocker = tmp_path / 'file'
  blocker.write_text('a file where the cache folder should be')
  monkeypatch.setenv('JAXCV_CACHE_DIR', str(blocker / 'cache'))
  np.testing.assert_array_equal(load_dataset(f'folder:{root}', 'all').images, expected)
  monkeypatch.setenv('JAXCV_CACHE_DIR', 'off')
  assert cache.cache_dir() is None
  np.testing.assert_array_equal(load_dataset(f'folder:{root}', 'all').images, expected)


# ---------------------------------------------------------------------------------------------
# The embedded sample
# ---------------------------------------------------------------------------------------------

@pytest.fixture(scope='module')
def sample():
  return {split: load_dataset('cifar10_sample', split) for split in ('train', 'test')}


def test_embedded_sample(sample):
  sample_file = REPO / 'jaxcv' / 'data' / 'sample' / 'cifar10-sample.tar.gz'
  assert sample_file.stat().st_size < 5_000_000
  for split, per_class in (('train', 1000), ('test', 200)):
    ds = sample[split]
    assert ds.images.shape == (10 * per_class, 32, 32, 3) and ds.class_names == CIFAR10_CLASSES
    np.testing.assert_array_equal(np.bincount(ds.labels), [per_class] * 10)


# ---------------------------------------------------------------------------------------------
# The real datasets (../shared/data), each decoded once per module
# ---------------------------------------------------------------------------------------------

@pytest.fixture(scope='module')
def real(shared_data_dir):
  loaded = {}

  def get(name: str, split: str):
    if (name, split) not in loaded:
      loaded[name, split] = load_dataset(name, split, shared_data_dir)
    return loaded[name, split]

  return get


def test_real_cifar10(real, sample):
  for split, n in (('train', 5000), ('test', 1000)):
    ds = real('cifar10', split)
    assert ds.images.shape == (10 * n, 32, 32, 3) and ds.class_names == CIFAR10_CLASSES
    np.testing.assert_array_equal(np.bincount(ds.labels), [n] * 10)
    # The sample is exactly the first images of each class.
    per_class = len(sample[split]) // 10
    for k in range(10):
      np.testing.assert_array_equal(sample[split].images[sample[split].labels == k],
                                    ds.images[ds.labels == k][:per_class])


def test_real_mnist(real):
  train, test = real('mnist', 'train'), real('mnist', 'test')
  assert train.images.shape == (60000, 28, 28, 1) and test.images.shape == (10000, 28, 28, 1)
  assert train.labels[:3].tolist() == [5, 0, 4] and test.labels[:3].tolist() == [7, 2, 1]
  assert np.bincount(test.labels).tolist()[:2] == [980, 1135]


def test_real_tiny_imagenet(real, shared_data_dir):
  ds = real('tiny_imagenet_val', 'val')
  assert ds.images.shape == (10000, 64, 64, 3) and ds.num_classes == 200
  np.testing.assert_array_equal(np.bincount(ds.labels), [50] * 200)
  with tarfile.open(shared_data_dir / 'tiny-imagenet-200-val.tar.gz') as tar:
    tsv = tar.extractfile('tiny-imagenet-200-val/classes.tsv').read().decode()
  assert ds.class_names == sorted(line.split('\t')[0] for line in tsv.splitlines() if line)


def test_real_dtd10(real):
  ds = real('dtd10', 'all')
  assert ds.images.shape == (1200, 96, 96, 3) and ds.num_classes == 10
  assert ds.class_names[0] == 'banded' and ds.class_names[-1] == 'crystalline'
  np.testing.assert_array_equal(np.bincount(ds.labels), [120] * 10)


def test_real_pacs(real):
  ds = real('pacs', 'all')
  assert ds.images.shape == (9991, 96, 96, 3) and ds.num_classes == 7
  assert ds.domain_names == ['art_painting', 'cartoon', 'photo', 'sketch']
  assert np.bincount(ds.domains).tolist() == [2048, 2344, 1670, 3929]
  photo = real('pacs', 'photo')
  np.testing.assert_array_equal(photo.images, ds.images[ds.domains == 2])
  np.testing.assert_array_equal(photo.domains, 2)


def test_real_camvid(real):
  for split, n in (('train', 367), ('val', 101), ('test', 233)):
    ds = real('camvid', split)
    assert ds.images.shape == (n, 180, 240, 3) and ds.labels.shape == (n, 180, 240)
    assert ds.labels.min() >= 0 and ds.labels.max() <= 11 and ds.ignore_index == 11
    assert list(ds.class_names) == ['Sky', 'Building', 'Pole', 'Road', 'Pavement', 'Tree',
                                    'SignSymbol', 'Fence', 'Car', 'Pedestrian', 'Bicyclist']
  # SegNet's order, checked on the pixels: sky (0) sits high in the frame, road (3) low.
  rows = np.arange(180)[None, :, None]
  mean_row = lambda k: np.broadcast_to(rows, ds.labels.shape)[ds.labels == k].mean()
  assert mean_row(0) < 60 < 120 < mean_row(3)


def test_sample_script_reproduces_the_shipped_file(shared_data_dir, tmp_path):
  out = tmp_path / 'sample.tar.gz'
  subprocess.run([sys.executable, str(REPO / 'scripts' / 'make_cifar10_sample.py'), '--source',
                  str(shared_data_dir / 'cifar10-jpeg.tar.gz'), '--out', str(out)], check=True,
                 capture_output=True)
  shipped = REPO / 'jaxcv' / 'data' / 'sample' / 'cifar10-sample.tar.gz'
  # Compare the tar streams: gzip's bytes may differ between zlib builds.
  assert gzip.decompress(out.read_bytes()) == gzip.decompress(shipped.read_bytes())


def test_derived_options_are_typed_like_their_defaults():
  defaults = {'method': 'cuda', 'test': '', 'pb': 0.3, 'seed': 0}
  parse = registry.parse_derived_options
  assert parse('k', "method='vuda',test=15,pb=1,seed=2", defaults) == {
      'method': 'vuda', 'test': '15', 'pb': 1.0, 'seed': 2}
  assert parse('k', 'test=+90%', defaults)['test'] == '+90%'
  assert parse('k', None, defaults) == defaults
  with pytest.raises(ConfigError, match='no argument'):
    parse('k', 'colour=red', defaults)
  with pytest.raises(ConfigError, match='is not a float'):
    parse('k', 'pb=high', defaults)
