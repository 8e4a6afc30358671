"""An on-disk cache of decoded datasets, so an archive is decoded once rather than every run.

Entries are uncompressed .npz files (loading CIFAR-10's 150 MB takes a fraction of a second,
whereas zlib would cost seconds) under `$JAXCV_CACHE_DIR` (default `~/.cache/jaxcv`;
`JAXCV_CACHE_DIR=off` disables caching). The key covers the source path, its size and
modification time (for folders: file count, total size and newest mtime), and the reader's
parameters, so a changed source is decoded afresh. The cache is best-effort: a corrupt entry is
deleted and rebuilt (another user's unreadable one is left alone), an unwritable directory only
turns caching off, and entries are readable by others as the umask allows.

The same mechanism (`keyed_path`, `cached_file`) serves jaxcv's other caches: derived datasets
(jaxcv/unlearnable/datasets.py), FID reference statistics and OOD features.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import tempfile
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, TypeVar

import numpy as np

from jaxcv import workdir
from jaxcv.data.dataset import ArrayDataset

_FORMAT_VERSION = 2  # Bump when the layout of entries or a reader's output changes.
_log = logging.getLogger(__name__)
T = TypeVar('T')


def cache_dir() -> Optional[Path]:
  """The cache folder, or None when caching is turned off."""
  value = os.environ.get('JAXCV_CACHE_DIR', '')
  if value.lower() in ('off', 'none', '0', 'false'):
    return None
  return Path(value).expanduser() if value else Path.home() / '.cache' / 'jaxcv'


def fingerprint(path: os.PathLike | str) -> dict[str, Any]:
  """What identifies the content of a file or folder tree, cheaply (no hashing of the data)."""
  path = Path(path)
  st = path.stat()
  if not path.is_dir():
    return {'size': st.st_size, 'mtime_ns': st.st_mtime_ns}
  # A folder's own mtime misses edits inside subfolders, so walk it (60k files: ~0.2 s).
  count, size, newest = 0, 0, st.st_mtime_ns
  for dirpath, dirnames, filenames in os.walk(path):
    newest = max(newest, os.stat(dirpath).st_mtime_ns)
    for f in filenames:
      fst = os.stat(os.path.join(dirpath, f))
      count, size, newest = count + 1, size + fst.st_size, max(newest, fst.st_mtime_ns)
  return {'files': count, 'size': size, 'mtime_ns': newest}


def keyed_path(root: Optional[os.PathLike | str], label: str,
               key: Mapping[str, Any]) -> Optional[Path]:
  """root/<label>-<digest of key>.npz, or None when root is None (caching off)."""
  if root is None:
    return None
  digest = hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()
  slug = re.sub(r'[^A-Za-z0-9_.-]+', '_', label)[-80:]
  return Path(root).expanduser() / f'{slug}-{digest[:20]}.npz'


def entry_path(label: str, source: os.PathLike | str, params: Mapping[str, Any]) -> Optional[Path]:
  """Where the entry for (source, params) lives, or None when caching is off."""
  source = Path(source).resolve()
  return keyed_path(cache_dir(), label, {
      'version': _FORMAT_VERSION, 'source': str(source), 'fingerprint': fingerprint(source),
      'params': dict(params)})


def cached_file(path: Optional[Path], build: Callable[[], T], *, load: Callable[[Path], Any],
                write: Callable[[T, Path], None], what: str) -> T:
  """`build()`'s result, read from `path` when a readable entry is there, else built and written.

  Best effort, for every cache in jaxcv (datasets, FID reference statistics, OOD features):
  `load` may return None to reject an entry; an unreadable entry is deleted and rebuilt;
  `write(value, tmp)` fills a temporary file in the same folder that is then renamed, so readers
  see either no entry or a complete one; an unwritable folder only skips caching. path=None:
  caching is off.
  """
  if path is not None and _is_file(path):
    try:
      value = load(path)
      if value is not None:
        _log.info('%s from %s', what, path)
        return value
    except Exception as e:  # pylint: disable=broad-except  (any damage means: rebuild)
      _log.warning('discarding unreadable cache entry %s (%s)', path, e)
      try:
        path.unlink(missing_ok=True)
      except OSError:  # Another user's entry in a shared cache: leave it, build our own.
        pass
  value = build()
  if path is not None:
    try:
      _write_atomically(path, lambda tmp: write(value, tmp))
    except OSError as e:
      _log.warning('not caching %s at %s: %s', what, path, e)
  return value


def cached(label: str, source: os.PathLike | str, params: Mapping[str, Any],
           build: Callable[[], ArrayDataset]) -> ArrayDataset:
  """`build()`'s result, read from the cache when a valid entry exists, else built and stored.

  Args:
    label: a readable prefix for the file name (e.g. 'cifar10-train').
    source: the file or folder the data is decoded from (fingerprinted into the key).
    params: everything else that changes the result (reader, split, image size, ...).
    build: decodes the dataset.
  """
  path = entry_path(label, source, params)
  if path is None or not _several_processes():
    return cached_file(path, build, load=load, write=write_dataset, what=label)
  # Several processes of one job (each loads the dataset): process 0 decodes and writes the
  # entry while the others wait, then they read it, so it is written once, not once per process.
  from jax.experimental import multihost_utils  # pylint: disable=import-outside-toplevel
  import jax  # pylint: disable=import-outside-toplevel
  if jax.process_index() == 0:
    value = cached_file(path, build, load=load, write=write_dataset, what=label)
  multihost_utils.sync_global_devices(f'jaxcv.data.cache:{path.name}')
  if jax.process_index() != 0:
    value = cached_file(path, build, load=load, write=write_dataset, what=label)
  return value


def _several_processes() -> bool:
  import jax  # pylint: disable=import-outside-toplevel  (the cache itself needs no jax)
  return jax.process_count() > 1


def _is_file(path: Path) -> bool:
  try:
    return path.is_file()
  except OSError:  # E.g. a folder we may not enter.
    return False


def _write_atomically(path: Path, write: Callable[[Path], None]) -> None:
  """write(tmp) into a temporary .npz next to `path`, then a rename onto `path`."""
  path.parent.mkdir(parents=True, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + '.', suffix='.tmp.npz')
  os.close(fd)
  try:
    write(Path(tmp))
    workdir.share(tmp)  # Readable by the other users of a shared cache, as the umask allows.
    os.replace(tmp, path)  # Readers see either no entry or a complete one.
  except BaseException:
    Path(tmp).unlink(missing_ok=True)
    raise


def write_dataset(dataset: ArrayDataset, path: Path) -> None:
  """An uncompressed .npz of the dataset at `path` (write through `cached_file` for atomicity)."""
  arrays = {'images': dataset.images, 'labels': dataset.labels,
            'class_names': np.asarray(list(dataset.class_names), dtype=str),
            'source': np.asarray(dataset.source)}
  if dataset.domains is not None:
    arrays['domains'] = dataset.domains
    arrays['domain_names'] = np.asarray(list(dataset.domain_names or ()), dtype=str)
  if dataset.ignore_index is not None:
    arrays['ignore_index'] = np.asarray(dataset.ignore_index)
  with open(path, 'wb') as f:
    np.savez(f, **arrays)


def load(path: Path) -> ArrayDataset:
  with np.load(path, allow_pickle=False) as z:
    return ArrayDataset(
        images=z['images'], labels=z['labels'], class_names=z['class_names'].tolist(),
        domains=z['domains'] if 'domains' in z.files else None,
        domain_names=z['domain_names'].tolist() if 'domain_names' in z.files else None,
        ignore_index=int(z['ignore_index']) if 'ignore_index' in z.files else None,
        source=str(z['source']))


def content_digest(images: np.ndarray) -> str:
  """A cheap identity of a dataset: its shape and ~256 evenly spaced images."""
  index = np.linspace(0, len(images) - 1, min(len(images), 256)).astype(int)
  h = hashlib.sha256(repr(images.shape).encode())
  h.update(np.ascontiguousarray(images[index]).tobytes())
  return h.hexdigest()[:16]
