"""Tests for the grain streaming loader: determinism, resumability and process sharding."""

import itertools

import numpy as np
import pytest

from jaxcv.data.streaming import StreamingLoader
from jaxcv.errors import ConfigError

NUM_EXAMPLES = 103  # Prime, so no batch size divides it and remainders are exercised.


class _Source:
  """In-memory random-access source: 4x4x3 uint8 images whose pixels and label are the index."""

  def __init__(self, n: int = NUM_EXAMPLES):
    self._n = n

  def __len__(self) -> int:
    return self._n

  def __getitem__(self, i: int) -> dict:
    return {'image': np.full((4, 4, 3), i % 256, np.uint8), 'label': i}


def _loader(global_batch_size=8, *, seed=0, index=0, count=1, source=None, **kwargs):
  source = _Source() if source is None else source
  kwargs.setdefault('num_threads', 2)  # The test machines have 2 cores.
  return StreamingLoader(source, global_batch_size, seed=seed, process_index=index,
                         process_count=count, **kwargs)


def _labels(loader, steps, start=0):
  return [loader.batch(s)['label'] for s in range(start, start + steps)]


def test_batch_shapes_and_dtypes():
  batch = _loader(8, count=2, index=1).batch(5)
  assert batch['image'].shape == (4, 4, 4, 3) and batch['image'].dtype == np.uint8
  assert batch['label'].shape == (4,)
  # Pixels come from the same example as the label.
  np.testing.assert_array_equal(batch['image'][:, 0, 0, 0], batch['label'] % 256)


@pytest.mark.parametrize('count', [2, 4])
def test_process_slices_partition_the_global_batch(count):
  single = _loader(8)
  slices = [_loader(8, index=p, count=count) for p in range(count)]
  for step in [0, 1, 12, 13, 40]:  # Includes steps past the first epoch.
    parts, whole = [s.batch(step) for s in slices], single.batch(step)
    for key in ('label', 'image'):
      np.testing.assert_array_equal(np.concatenate([p[key] for p in parts]), whole[key])


def test_each_epoch_visits_every_example_once():
  loader = _loader(8, source=_Source(96))
  assert loader.steps_per_epoch == 12
  epochs = [np.concatenate(_labels(loader, 12, start=e * 12)) for e in range(3)]
  for labels in epochs:
    np.testing.assert_array_equal(np.sort(labels), np.arange(96))
  # A fresh shuffle every epoch.
  assert not np.array_equal(epochs[0], epochs[1])
  assert not np.array_equal(epochs[1], epochs[2])


def test_drop_remainder_drops_a_partial_batch_per_epoch():
  loader = _loader(8)
  assert loader.steps_per_epoch == 12  # 103 // 8
  labels = np.concatenate(_labels(loader, 12))
  assert len(np.unique(labels)) == 96 and labels.max() < NUM_EXAMPLES


def test_padding_and_mask_without_drop_remainder():
  loader = _loader(8, drop_remainder=False, shuffle=False)
  assert loader.steps_per_epoch == 13  # ceil(103 / 8)
  batches = [loader.batch(s) for s in range(13)]
  labels = np.concatenate([b['label'] for b in batches])
  mask = np.concatenate([b['mask'] for b in batches])
  np.testing.assert_array_equal(labels[mask], np.arange(NUM_EXAMPLES))
  np.testing.assert_array_equal(labels[~mask], np.arange(1))  # Padding wraps to the start.
  # The next epoch starts afresh rather than continuing after the padding.
  np.testing.assert_array_equal(loader.batch(13)['label'], np.arange(8))
  # Padding is sharded like any other example.
  halves = [_loader(8, drop_remainder=False, shuffle=False, index=p, count=2).batch(12)
            for p in range(2)]
  np.testing.assert_array_equal(np.concatenate([h['mask'] for h in halves]), batches[12]['mask'])


def test_iterate_matches_random_access():
  for count, index in [(1, 0), (2, 1)]:
    loader = _loader(8, index=index, count=count)
    for start in [0, 7, 11]:  # 11 crosses the epoch boundary at step 12.
      got = list(itertools.islice(loader.iterate(start), 5))
      for offset, batch in enumerate(got):
        want = loader.batch(start + offset)
        for key in want:
          np.testing.assert_array_equal(batch[key], want[key])


def test_same_seed_same_order_different_seed_different_order():
  a = np.concatenate(_labels(_loader(8, seed=3), 4))
  b = np.concatenate(_labels(_loader(8, seed=3), 4))
  c = np.concatenate(_labels(_loader(8, seed=4), 4))
  np.testing.assert_array_equal(a, b)
  assert not np.array_equal(a, c)


def test_adjacent_seeds_do_not_replay_shifted_epochs():
  # grain folds (seed + epoch) into its shuffle; the loader must not inherit that overlap.
  first = np.concatenate(_labels(_loader(8, seed=0), 12, start=12))  # Epoch 1 of seed 0.
  second = np.concatenate(_labels(_loader(8, seed=1), 12))  # Epoch 0 of seed 1.
  assert not np.array_equal(first, second)


def test_no_shuffle_is_sequential():
  np.testing.assert_array_equal(_loader(8, shuffle=False).batch(2)['label'], np.arange(16, 24))


def _noisy(example, rng):
  """A transform with per-example randomness, as random crops or flips would have."""
  return {**example, 'noise': rng.integers(0, 2**31, size=3)}


def test_transform_is_deterministic_and_sharding_independent():
  single = _loader(8, transform=_noisy, seed=5)
  again = _loader(8, transform=_noisy, seed=5)
  halves = [_loader(8, transform=_noisy, seed=5, index=p, count=2) for p in range(2)]
  for step in [0, 3, 20]:
    want = single.batch(step)['noise']
    np.testing.assert_array_equal(again.batch(step)['noise'], want)
    np.testing.assert_array_equal(np.concatenate([h.batch(step)['noise'] for h in halves]), want)
  # Threaded iteration draws the same randomness as random access.
  got = next(single.iterate(3))['noise']
  np.testing.assert_array_equal(got, single.batch(3)['noise'])
  # Randomness varies across examples and with the seed.
  noise = single.batch(0)['noise']
  assert len(np.unique(noise[:, 0])) == len(noise)
  other = _loader(8, transform=_noisy, seed=6).batch(0)
  assert not np.array_equal(other['noise'], noise)


@pytest.mark.parametrize('kwargs, match', [
    (dict(global_batch_size=6, count=4), 'not divisible'),
    (dict(source=_Source(0)), 'empty'),
    (dict(global_batch_size=200), 'exceeds'),
    (dict(index=2, count=2), 'process index'),
    (dict(seed=-1), 'seed'),
])
def test_config_errors(kwargs, match):
  with pytest.raises(ConfigError, match=match):
    _loader(**kwargs)


def test_process_layout_defaults_to_jax():
  import jax  # Imported here so the other tests stay independent of a backend.
  loader = StreamingLoader(_Source(), 8, seed=0, num_threads=2)
  assert (loader.process_index, loader.process_count) == (jax.process_index(), jax.process_count())
  assert loader.local_batch_size == 8 // jax.process_count()


def test_abandoned_iterator_stops_its_threads():
  import threading, time  # pylint: disable=g-import-not-at-top,multiple-imports
  before = threading.active_count()
  iterator = _loader(8, num_threads=4).iterate(0)
  next(iterator)
  assert threading.active_count() > before
  iterator.close()  # What happens when a caller drops it to restart at another step.
  deadline = time.monotonic() + 10
  while threading.active_count() > before and time.monotonic() < deadline:
    time.sleep(0.05)
  assert threading.active_count() == before
