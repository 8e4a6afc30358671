"""Host-side streaming input pipeline (grain) for datasets too large for device memory.

Batch number `step` is a pure function of (seed, step): a resumed run calls `iterate(step)` and
continues the exact sequence of batches without any saved iterator state. In multi-process runs
each process loads only its contiguous slice of every global batch, so concatenating the slices
in process order gives the global batch (the layout `jax.make_array_from_process_local_data`
expects).

The global example stream is laid out epoch by epoch: epoch `e` occupies stream positions
[e * P, (e + 1) * P) with P = steps_per_epoch * global_batch_size, and global batch `step` is
stream positions [step * B, (step + 1) * B). Within an epoch, position q holds the q-th example of
that epoch's shuffled order; with `drop_remainder` the last `len % B` examples of each epoch are
skipped (different ones each epoch), otherwise the epoch is padded up to a whole batch by wrapping
around to its start, and every example carries `mask` (False on padding) so that evaluation can
count each example exactly once.
"""

from __future__ import annotations

import sys
from typing import Any, Callable, Iterator, Optional, Protocol

import numpy as np

try:
  import grain  # The top-level dataset API (grain >= 0.2.x).
  _ = grain.MapDataset
except (ImportError, AttributeError):  # Older wheels only ship `grain.python`.
  import grain.python as grain  # type: ignore[no-redef]

from jaxcv.errors import ConfigError

Example = dict[str, Any]
# A per-example host function: (example, rng) -> example. The rng is seeded from (seed, stream
# position), so augmentations are reproducible yet differ between epochs.
Transform = Callable[[Example, np.random.Generator], Example]

# Distinct SeedSequence entropy per use, so the shuffle and the transforms never share a stream.
_SHUFFLE_STREAM = 0
_TRANSFORM_STREAM = 1


class RandomAccessSource(Protocol):
  """grain's RandomAccessDataSource protocol: a sized, indexable collection of examples."""

  def __len__(self) -> int:
    ...

  def __getitem__(self, index: int) -> Example:
    ...


class StreamingLoader:
  """Deterministic, resumable, process-sharded batches from a random-access source.

  Example:
    loader = StreamingLoader(source, 1024, seed=0, transform=random_crop)
    for step, batch in enumerate(loader.iterate(start_step), start_step):
      ...  # batch: dict of numpy arrays with leading dim 1024 // jax.process_count()
  """

  def __init__(self, source: RandomAccessSource, global_batch_size: int, *, seed: int,
               shuffle: bool = True, drop_remainder: bool = True,
               transform: Optional[Transform] = None, process_index: Optional[int] = None,
               process_count: Optional[int] = None, num_threads: int = 16, prefetch: int = 16):
    """Builds the loader; nothing is read until a batch is requested.

    Args:
      source: random-access examples (`__len__`, `__getitem__(i) -> dict`), e.g. an ArrayRecord
        data source or an image-folder reader.
      global_batch_size: examples per step summed over all processes.
      seed: non-negative int; fixes the shuffle order of every epoch and the transform rngs.
      shuffle: reshuffle the whole source every epoch (a global, not windowed, shuffle).
      drop_remainder: skip each epoch's last partial batch; if False, pad it by wrapping around
        and add a bool `mask` key (False on padding) to every batch.
      transform: optional `(example, rng) -> example` applied on the host (decode, crop, ...).
      process_index: this process's index; defaults to `jax.process_index()`.
      process_count: number of processes; defaults to `jax.process_count()`.
      num_threads: host threads, each reading and transforming one whole batch at a time.
      prefetch: batches to read ahead of the consumer (raised to num_threads, so that every
        thread has a batch to work on); host memory holds about this many batches.

    Raises:
      ConfigError: on an empty source, a batch size that does not split evenly across processes
        (or, with drop_remainder, exceeds the source), a process index out of range, or a
        negative seed.
    """
    if process_index is None or process_count is None:
      import jax  # Deferred so that data-only tools need not initialise a backend.
      process_index = jax.process_index() if process_index is None else process_index
      process_count = jax.process_count() if process_count is None else process_count
    num_examples = len(source)
    if num_examples == 0:
      raise ConfigError('the streaming data source is empty')
    if global_batch_size <= 0:
      raise ConfigError(f'global batch size must be positive, got {global_batch_size}')
    if process_count <= 0 or not 0 <= process_index < process_count:
      raise ConfigError(f'process index {process_index} is not in [0, {process_count})')
    if global_batch_size % process_count:
      raise ConfigError(
          f'global batch size {global_batch_size} is not divisible by the number of processes '
          f'({process_count}); use a multiple of {process_count}')
    if seed < 0:
      raise ConfigError(f'seed must be non-negative, got {seed}')
    if drop_remainder and num_examples < global_batch_size:
      raise ConfigError(
          f'global batch size {global_batch_size} exceeds the {num_examples} examples in the '
          'source, so drop_remainder would leave no batches')

    self.global_batch_size = global_batch_size
    self.local_batch_size = global_batch_size // process_count
    self.process_index = process_index
    self.process_count = process_count
    self.seed = seed
    self._num_examples = num_examples
    self._drop_remainder = drop_remainder
    self._transform = transform
    # Each grain thread reads a whole batch; the buffer counts batches and must be at least
    # num_threads or threads sit idle.
    self._read_options = grain.ReadOptions(num_threads=num_threads,
                                           prefetch_buffer_size=max(prefetch, num_threads))
    if drop_remainder:
      self._steps_per_epoch = num_examples // global_batch_size
    else:
      self._steps_per_epoch = -(-num_examples // global_batch_size)

    # ds[e * N + i] is the i-th example of epoch e; grain reshuffles each epoch. The shuffle seed
    # is hashed because grain uses (seed + epoch), which would make seed s+1 replay seed s shifted
    # by one epoch.
    examples = grain.MapDataset.source(source)
    if shuffle:
      shuffle_seed = np.random.SeedSequence([seed, _SHUFFLE_STREAM]).generate_state(1)[0]
      examples = examples.shuffle(seed=int(shuffle_seed))
    self._examples = examples.repeat()
    # This process's examples, in order: local index k -> the stream position it holds.
    self._local = grain.MapDataset.range(sys.maxsize).map(self._load_local)

  @property
  def steps_per_epoch(self) -> int:
    """Steps that make up one pass over the source (the last one padded if not drop_remainder)."""
    return self._steps_per_epoch

  def batch(self, step: int) -> Example:
    """This process's slice of global batch `step` (random access, single-threaded)."""
    if step < 0:
      raise ValueError(f'step must be non-negative, got {step}')
    return self._local.batch(self.local_batch_size, drop_remainder=True)[step]

  def iterate(self, start_step: int = 0) -> Iterator[Example]:
    """Yields this process's slices of batches start_step, start_step + 1, ... forever."""
    if start_step < 0:
      raise ValueError(f'start_step must be non-negative, got {start_step}')
    # Threads read whole batches: grain 0.2.18's prefetcher scans its buffer on every element,
    # so buffering thousands of single examples costs more than the reads (~10x measured).
    batches = self._local.batch(self.local_batch_size, drop_remainder=True)[start_step:]
    iterator = iter(batches.to_iter_dataset(self._read_options))
    try:
      yield from iterator
    finally:  # Stop the reader threads as soon as a caller abandons the iterator.
      iterator.close()

  def _load_local(self, local_index: int) -> Example:
    step, offset = divmod(local_index, self.local_batch_size)
    position = step * self.global_batch_size + self.process_index * self.local_batch_size + offset
    return self._load(position)

  def _load(self, position: int) -> Example:
    """The example at global stream `position`, transformed; independent of the process layout."""
    epoch, index_in_epoch = divmod(position, self._steps_per_epoch * self.global_batch_size)
    example = dict(self._examples[epoch * self._num_examples + index_in_epoch % self._num_examples])
    if self._transform is not None:
      rng = np.random.default_rng([self.seed, _TRANSFORM_STREAM, position])
      example = self._transform(example, rng)
    if not self._drop_remainder:
      example['mask'] = np.bool_(index_in_epoch < self._num_examples)
    return example
