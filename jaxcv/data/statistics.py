"""Per-channel mean and standard deviation of named datasets, for models' input normalisation.

Models take images in [0, 1] and normalise inside (`model.kwargs.input_mean/input_std`), so a
config asks the dataset for its statistics instead of copying the numbers:

    config.model.kwargs.input_mean, config.model.kwargs.input_std = input_normalization('cifar10')

Derived names resolve to their base dataset ('cuda(pb=0.3):cifar10' -> cifar10's statistics):
a poisoned or corrupted training set is normalised as the clean data it imitates.
"""

from __future__ import annotations

from jaxcv.errors import ConfigError

# Training-split statistics of the official data, the values the field uses.
_STATISTICS = {
    'cifar10': ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    'cifar100': ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
    'mnist': ((0.1307,), (0.3081,)),
    'fashion_mnist': ((0.2860,), (0.3530,)),
    'imagenet': ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
}
_ALIASES = {'cifar10_sample': 'cifar10', 'tiny_imagenet_val': 'imagenet', 'pacs': 'imagenet'}


def input_normalization(name: str,
                        default: str = '') -> tuple[tuple[float, ...], tuple[float, ...]]:
  """(mean, std) per channel of dataset `name` or of the base of a derived name; for a dataset
  without statistics (synthetic data, a folder), those of the dataset `default` if given."""
  for part in [*reversed(name.split(':')), *([default] if default else [])]:
    key = _ALIASES.get(part.strip(), part.strip())
    if key in _STATISTICS:
      return _STATISTICS[key]
  raise ConfigError(f'no normalisation statistics for dataset {name!r}; known: '
                    f'{", ".join(sorted({*_STATISTICS, *_ALIASES}))} (set model.kwargs.input_mean '
                    'and input_std yourself)')
