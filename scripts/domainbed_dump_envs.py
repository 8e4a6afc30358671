"""Dumps the environments DomainBed's own datasets.py builds, for scripts/domainbed_compare_envs.py.

Runs where torch, torchvision and pillow are installed (jaxcv is not needed), with a DomainBed
checkout (its `domainbed/` package; the WILDS imports it makes are stubbed, as they are unused):

    /tmp/torchenv/bin/python scripts/domainbed_dump_envs.py DOMAINBED_CHECKOUT DATA_ROOT OUT.npz

DATA_ROOT holds MNIST/raw/ (the four uncompressed idx files, torchvision's MNIST layout) and
PACS/<domain>/<class>/<image>. For each seed, as DomainBed's train.py: torch.manual_seed(seed), then
the dataset; RotatedMNIST / ColoredMNIST images are stored as uint8 (x * 255), PACS as each
environment's file list, labels and the md5 of each decoded RGB image.
"""

import hashlib
import sys
import types

import numpy as np
import torch
import torchvision

SEEDS = (0, 466558717)  # DomainBed's default --seed; its sweep's seed for ERM, RotatedMNIST, env 5.


def load_domainbed(checkout):
  sys.path.insert(0, checkout)
  for name in ('wilds', 'wilds.datasets', 'wilds.datasets.camelyon17_dataset',
               'wilds.datasets.fmow_dataset'):
    sys.modules[name] = types.ModuleType(name)
  sys.modules['wilds.datasets.camelyon17_dataset'].Camelyon17Dataset = None
  sys.modules['wilds.datasets.fmow_dataset'].FMoWDataset = None
  from domainbed import datasets  # pylint: disable=g-import-not-at-top
  return datasets


def main(checkout, root, out_path):
  datasets = load_domainbed(checkout)
  out = {'torch': torch.__version__, 'torchvision': torchvision.__version__}
  for seed in SEEDS:
    for name in ('RotatedMNIST', 'ColoredMNIST'):
      torch.manual_seed(seed)
      for i, env in enumerate(getattr(datasets, name)(root, [0], {}).datasets):
        x, y = env.tensors
        out[f'{name}_{seed}_env{i}_x'] = (x * 255).round().to(torch.uint8).numpy()
        out[f'{name}_{seed}_env{i}_y'] = y.numpy()
  pacs = datasets.PACS(root, [0], {'data_augmentation': False})
  for i, env in enumerate(pacs.datasets):
    out[f'PACS_env{i}_files'] = [path.split('/PACS/')[1] for path, _ in env.samples]
    out[f'PACS_env{i}_y'] = [label for _, label in env.samples]
    out[f'PACS_env{i}_md5'] = [hashlib.md5(np.asarray(env.loader(path)).tobytes()).hexdigest()
                               for path, _ in env.samples]
  np.savez_compressed(out_path, **{k: np.asarray(v) for k, v in out.items()})


if __name__ == '__main__':
  main(*sys.argv[1:4])
