"""DomainBed's leave-one-domain-out splits as a derived dataset: `domainbed(test=ENV):NAME`.

NAME is any dataset with domain ids in its split 'all' (pacs, rotated_mnist, colored_mnist, or
a DomainBed folder). Every environment (domain) is split into an `in` part and an `out` part of
`int(len(env) * holdout)` examples, as DomainBed's train.py does:

  out, in_ = misc.split_dataset(env, int(len(env) * holdout_fraction),
                                misc.seed_hash(trial_seed, env_i))

`split_env` reproduces misc.split_dataset exactly (np.random.RandomState(seed).shuffle of
list(range(n)); the first n_out keys are `out`) and `seed_hash` reproduces misc.seed_hash (md5 of
str((trial_seed, env_i))), so a position inside an environment falls on the same side as in
DomainBed. Since jaxcv's DomainBed datasets hold DomainBed's examples in DomainBed's order (image
trees in torchvision ImageFolder's order, Rotated / Colored MNIST from torch's random stream:
jaxcv/data/sources.py read_domainbed, mnist.py), the splits hold the same examples too.

Splits (domain ids and domain_names are kept, so the ids match the base dataset's):
  train       the `in` parts of the source environments (what DomainBed trains on)
  val         the `out` parts of the source environments (training-domain validation)
  test        the whole test environment
  test_in     its `in` part (what DomainBed reports)
  test_out    its `out` part (the test-domain oracle's validation set)
  train_full  the source environments whole (ERM++'s second, full-data pass)

Options: test (required: a domain name, or its index when no domain has that name), holdout
(default 0.2: DomainBed's holdout_fraction), seed (default 0: DomainBed's trial_seed). One test
environment per run (DomainBed's leave-one-domain-out CV, which holds out two, is not offered).
"""

from __future__ import annotations

import hashlib
from typing import Any, Optional

import ml_collections
import numpy as np

from jaxcv.data import registry
from jaxcv.data.dataset import ArrayDataset
from jaxcv.errors import ConfigError

SPLITS = ('train', 'val', 'test', 'test_in', 'test_out', 'train_full')
OPTIONS = {'test': '', 'holdout': 0.2, 'seed': 0}


def seed_hash(*args) -> int:
  """DomainBed's misc.seed_hash: an integer seed derived from the args' repr."""
  return int(hashlib.md5(str(args).encode('utf-8')).hexdigest(), 16) % (2**31)


def split_env(num_examples: int, holdout: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
  """(in, out) positions of one environment, as DomainBed's misc.split_dataset cuts them."""
  keys = list(range(num_examples))
  np.random.RandomState(seed).shuffle(keys)
  num_out = int(num_examples * holdout)
  return np.asarray(keys[num_out:], np.int64), np.asarray(keys[:num_out], np.int64)


def env_parts(domains: np.ndarray, num_envs: int, holdout: float,
              trial_seed: int) -> dict[int, tuple[np.ndarray, np.ndarray]]:
  """{env id: (in, out)} as indices into the dataset, each sorted; env i is seeded with
  seed_hash(trial_seed, i), i being the position in domain_names (DomainBed's env order)."""
  parts = {}
  for env in range(num_envs):
    members = np.flatnonzero(np.asarray(domains) == env)
    if len(members):
      in_, out = split_env(len(members), holdout, seed_hash(trial_seed, env))
      parts[env] = (np.sort(members[in_]), np.sort(members[out]))
  return parts


def parse_options(text: Optional[str]) -> dict[str, Any]:
  """'test=sketch,holdout=0.2,seed=1' -> {'test': 'sketch', 'holdout': 0.2, 'seed': 1}."""
  # test is always a name: '15' is RotatedMNIST's 15-degree environment.
  options = registry.parse_derived_options('domainbed', text, OPTIONS)
  if not options['test']:
    raise ConfigError(f'domainbed({text or ""}) needs test=<environment name or index>')
  if not 0.0 < options['holdout'] < 1.0:
    raise ConfigError(f'domainbed holdout must be in (0, 1), got {options["holdout"]}')
  return options


def test_env_index(test: str, domain_names) -> int:
  """The id of environment `test`: a domain name, else an index into domain_names."""
  names = [str(n) for n in domain_names]
  if test in names:
    return names.index(test)
  if test.isdigit() and int(test) < len(names):
    return int(test)
  raise ConfigError(f'domainbed test={test!r} is not an environment of this dataset; '
                    f'environments: {", ".join(names)} (or their index 0..{len(names) - 1})')


def domainbed_split(base: ArrayDataset, split: str, test: str, holdout: float = 0.2,
                    seed: int = 0) -> ArrayDataset:
  """Split `split` (see the module docstring) of the multi-domain dataset `base`."""
  if base.domains is None or not base.domain_names:
    raise ConfigError(f'domainbed(...) needs a dataset with domain ids (e.g. pacs, '
                      f'rotated_mnist); {base.source or "this dataset"} has none')
  if split not in SPLITS:
    raise ConfigError(f'domainbed(...) has splits {", ".join(SPLITS)}, not {split!r}')
  test_id = test_env_index(test, base.domain_names)
  parts = env_parts(base.domains, len(base.domain_names), holdout, seed)
  if test_id not in parts:
    raise ConfigError(f'test environment {test!r} has no examples')
  sources = [env for env in parts if env != test_id]
  if not sources:
    raise ConfigError('domainbed(...) needs at least one source environment besides the test one')
  pick = {
      'train': [parts[env][0] for env in sources],
      'val': [parts[env][1] for env in sources],
      'train_full': [part for env in sources for part in parts[env]],
      'test': list(parts[test_id]),
      'test_in': [parts[test_id][0]],
      'test_out': [parts[test_id][1]],
  }[split]
  subset = base.subset(np.sort(np.concatenate(pick)))
  subset.source = (f'domainbed(test={base.domain_names[test_id]},holdout={holdout},seed={seed}) '
                   f'{split} of {base.source}')
  return subset


def load_derived(kind: str, options: Optional[str], base: ArrayDataset,
                 split: str) -> ArrayDataset:
  """The data layer's hook (jaxcv/data/registry.py DERIVED): split `split` of
  `domainbed(options):BASE`, given BASE's split 'all' (see `base_split`)."""
  del kind
  return domainbed_split(base, split, **parse_options(options))


# The registry loads this split of the base dataset: every split here re-cuts the whole of it.
# Not cached: cutting is indexing, and the base split is already cached.
load_derived.base_split = 'all'


def evals_config(batch_size: int = 256, oracle: bool = True) -> ml_collections.ConfigDict:
  """The evaluators DomainBed's selection methods read (selection.py's default keys):
  val = source-env `out` parts, test_in = test env `in` part, test_out = its `out` part."""
  splits = ('val', 'test_in') + (('test_out',) if oracle else ())
  return ml_collections.ConfigDict({
      split: {'type': 'domains', 'split': split, 'batch_size': batch_size} for split in splits})
