"""PyTorch's CPU random numbers (`torch.manual_seed`, `torch.randperm`, `torch.rand`) in numpy.

DomainBed builds RotatedMNIST / ColoredMNIST from torch's default CPU generator seeded with its
`--seed`; reproducing its environments needs that exact stream, and no library other than torch
itself produces it (so it is written here, on top of numpy's Mersenne Twister).

What torch does (ATen: MT19937RNGEngine.h, CPUGeneratorImpl, TensorFactories.cpp randperm_cpu,
DistributionsHelper.h / TransformationHelper.h uniform_real, cpu/DistributionTemplates.h
uniform_kernel):

- `manual_seed(seed)`: a standard mt19937 seeded with init_genrand(seed & 0xffffffff); every
  draw (`random()`) is one tempered 32-bit output. numpy's legacy `RandomState(seed)` seeding is
  the same init_genrand, and `MT19937.random_raw` returns the same 32-bit outputs.
- `randperm(n)` on CPU, for n < 2**32 // 20: start from 0..n-1 and for i = 0..n-2 swap position
  i with position i + random() % (n - i) (one draw per i, n - 1 draws). Larger n takes another
  algorithm (not reproduced here).
- `rand(n)` (float32): element by element in order, one draw each,
  `(random() & (2**24 - 1)) * 2**-24`.
- DomainBed's `torch_bernoulli_(p, n)` is `torch.rand(n) < p`, compared in float32.

Checked against torch 2.14.1 (CPU) with scripts/record_torch_rng.py, whose output is the test
fixture tests/fixtures/torch_rng.json.
"""

from __future__ import annotations

import numpy as np

# randperm_cpu switches to a 64-bit inside-out shuffle from here on.
RANDPERM_MAX = (2**32 - 1) // 20
_FLOAT_BITS = 24  # std::numeric_limits<float>::digits


class TorchCPUGenerator:
  """torch's default CPU generator after `torch.manual_seed(seed)`; draws advance it as torch's
  calls do, so a sequence of calls here matches the same sequence of torch calls."""

  def __init__(self, seed: int):
    if seed < 0:
      raise ValueError(f'seed must be >= 0, got {seed}')
    key = np.random.RandomState(seed & 0xFFFFFFFF).get_state()[1]  # init_genrand(seed).
    self._bits = np.random.MT19937()
    self._bits.state = {'bit_generator': 'MT19937', 'state': {'key': key, 'pos': 624}}

  def random(self, n: int) -> np.ndarray:
    """The next n 32-bit outputs (torch's `generator->random()`), as int64."""
    return self._bits.random_raw(n).astype(np.int64)

  def randperm(self, n: int) -> np.ndarray:
    """`torch.randperm(n)` (int64)."""
    if n >= RANDPERM_MAX:
      raise ValueError(f'randperm of n >= {RANDPERM_MAX} uses another torch algorithm; n={n}')
    if n <= 0:
      return np.arange(max(n, 0), dtype=np.int64)
    offsets = (self.random(n - 1) % np.arange(n, 1, -1)).tolist()
    perm = list(range(n))
    for i, z in enumerate(offsets):  # A sequential swap chain: no vectorised form.
      j = i + z
      perm[i], perm[j] = perm[j], perm[i]
    return np.asarray(perm, np.int64)

  def rand(self, n: int) -> np.ndarray:
    """`torch.rand(n)` (float32 in [0, 1))."""
    mantissa = self.random(n) & ((1 << _FLOAT_BITS) - 1)
    return (mantissa * 2.0**-_FLOAT_BITS).astype(np.float32)

  def bernoulli_as_domainbed(self, p: float, n: int) -> np.ndarray:
    """DomainBed's `torch_bernoulli_(p, n)`: `torch.rand(n) < p` (a float32 comparison), bool."""
    return self.rand(n) < np.float32(p)
