"""Records PyTorch's CPU random numbers as DomainBed draws them, for tests/fixtures/torch_rng.json.

Needs PyTorch (any build; only the CPU generator is used), which jaxcv itself never imports:

    python3 -m venv /tmp/torchenv && /tmp/torchenv/bin/pip install torch numpy
    /tmp/torchenv/bin/python scripts/record_torch_rng.py tests/fixtures/torch_rng.json

For each seed, as DomainBed's train.py (`torch.manual_seed(seed)`) then datasets.py's
MultipleEnvironmentMNIST / ColoredMNIST draw: `torch.randperm(70000)` (its first and last 300
entries), then for each ColoredMNIST environment (sizes 23334, 23333, 23333) the label flips
`torch.rand(n) < 0.25` and colour flips `torch.rand(n) < p` (p = 0.1, 0.2, 0.9): the first 200
and the count of each. The RotatedMNIST stream is the randperm alone (its environments draw
nothing). Also whole permutations of small n and a few raw `torch.rand` values, each right after
`manual_seed`. jaxcv/domain_generalization/torch_rng.py reproduces all of it without torch.
"""

import datetime
import hashlib
import json
import sys

import torch

MNIST_SIZE = 70000
HEAD = TAIL = 300
FLIPS_SHOWN = 200
COLOR_FLIPS = (0.1, 0.2, 0.9)
LABEL_FLIP = 0.25


def seed_hash(*args):
  """DomainBed's misc.seed_hash: a sweep run's --seed."""
  return int(hashlib.md5(str(args).encode('utf-8')).hexdigest(), 16) % (2**31)


# DomainBed's default --seed 0, another plain seed, and two seeds its sweep gives ERM runs.
SEEDS = {
    '0': 0,
    '1': 1,
    "seed_hash('RotatedMNIST', 'ERM', [5], 0, 0)": seed_hash('RotatedMNIST', 'ERM', [5], 0, 0),
    "seed_hash('ColoredMNIST', 'ERM', [2], 0, 0)": seed_hash('ColoredMNIST', 'ERM', [2], 0, 0),
}


def domainbed_stream(seed):
  torch.manual_seed(seed)
  perm = torch.randperm(MNIST_SIZE)
  envs = []
  for env, flip in enumerate(COLOR_FLIPS):
    n = len(range(env, MNIST_SIZE, len(COLOR_FLIPS)))
    label_flips = torch.rand(n) < LABEL_FLIP  # DomainBed's torch_bernoulli_(0.25, n).
    colour_flips = torch.rand(n) < flip
    envs.append({'size': n, 'colour_flip_p': flip,
                 'label_flips_head': label_flips[:FLIPS_SHOWN].int().tolist(),
                 'label_flips_count': int(label_flips.sum()),
                 'colour_flips_head': colour_flips[:FLIPS_SHOWN].int().tolist(),
                 'colour_flips_count': int(colour_flips.sum())})
  return {'seed': seed, 'randperm_head': perm[:HEAD].tolist(),
          'randperm_tail': perm[-TAIL:].tolist(), 'colored_mnist_envs': envs}


def small_draws(seed):
  out = {'seed': seed}
  for n in (1, 2, 10, 360):
    torch.manual_seed(seed)
    out[f'randperm_{n}'] = torch.randperm(n).tolist()
  torch.manual_seed(seed)
  out['rand_8'] = torch.rand(8).tolist()  # float32 values, exact in JSON as doubles.
  return out


def main(path):
  record = {
      'torch_version': torch.__version__,
      'recorded': datetime.date.today().isoformat(),
      'randperm_n': MNIST_SIZE,
      'domainbed': {name: domainbed_stream(seed) for name, seed in SEEDS.items()},
      'small': [small_draws(seed) for seed in (0, 7, 2**31 - 1)],
  }
  with open(path, 'w') as f:
    json.dump(record, f, separators=(',', ':'))
    f.write('\n')


if __name__ == '__main__':
  main(sys.argv[1] if len(sys.argv) > 1 else 'tests/fixtures/torch_rng.json')
