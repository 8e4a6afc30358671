"""Compares jaxcv's RotatedMNIST / ColoredMNIST / PACS environments with DomainBed's own (the
dump of scripts/domainbed_dump_envs.py), example by example; prints a JSON report.

    python scripts/domainbed_compare_envs.py DUMP.npz MNIST_IDX_DIR PACS_DIR > report.json

Also measures what jaxcv's earlier natural file order changed in PACS: how many positions moved
and the share of trial 0's `out` split (holdout 0.2) that held other examples.
"""

import hashlib
import json
import sys
from pathlib import Path

import numpy as np

from jaxcv.data import sources
from jaxcv.domain_generalization import mnist, splits

SEEDS = (0, 466558717)


def compare_mnist(ref, mnist_dir):
  report = {}
  images, digits = mnist.read_mnist_70k(Path(mnist_dir))
  for seed in SEEDS:
    for kind, name in (('rotated', 'RotatedMNIST'), ('colored', 'ColoredMNIST')):
      data = mnist.environments(kind, images, digits, seed=seed)
      for env, env_name in enumerate(data.domain_names):
        part = data.subset(data.domains == env)
        x = ref[f'{name}_{seed}_env{env}_x'].transpose(0, 2, 3, 1)  # NCHW -> NHWC.
        y = ref[f'{name}_{seed}_env{env}_y']
        same_shape = part.images.shape == x.shape
        report[f'{name} seed {seed} env {env_name}'] = {
            'examples': len(part), 'domainbed_examples': len(y),
            'labels_equal': bool(np.array_equal(part.labels, y)),
            'images_equal': bool(same_shape and np.array_equal(part.images, x)),
        }
  return report


def compare_pacs(ref, pacs_dir):
  report = {}
  pacs = sources.read_domainbed(pacs_dir)
  for env, env_name in enumerate(pacs.domain_names):
    part = pacs.subset(pacs.domains == env)
    files = [str(f) for f in ref[f'PACS_env{env}_files']]
    natural = sorted(files, key=lambda f: (f.split('/')[1], sources.natural_key(f.split('/')[-1])))
    position = {f: i for i, f in enumerate(files)}
    before = np.array([position[f] for f in natural])  # What natural order put at each position.
    _, out = splits.split_env(len(files), 0.2, splits.seed_hash(0, env))
    report[f'PACS env {env_name}'] = {
        'examples': len(part),
        'images_equal_in_order': [hashlib.md5(im.tobytes()).hexdigest() for im in part.images]
                                 == [str(m) for m in ref[f'PACS_env{env}_md5']],
        'labels_equal': bool(np.array_equal(part.labels, ref[f'PACS_env{env}_y'])),
        'positions_natural_order_moved': int(np.sum(before != np.arange(len(files)))),
        'share_of_out_split_natural_order_changed': round(
            len(set(before[out]) - set(out)) / len(out), 3),
    }
  return report


def main(dump, mnist_dir, pacs_dir):
  ref = np.load(dump)
  report = {'torch': str(ref['torch']), 'torchvision': str(ref['torchvision'])}
  report.update(compare_mnist(ref, mnist_dir))
  report.update(compare_pacs(ref, pacs_dir))
  json.dump(report, sys.stdout, indent=1)
  print()


if __name__ == '__main__':
  main(*sys.argv[1:4])
