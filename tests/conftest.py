"""Test-wide set-up: 8 fake CPU devices, so every test exercises the sharded code path.

Tests that need a single device pass `devices=jax.devices()[:1]` where the API takes devices.
"""

import os
import tempfile
from pathlib import Path

import jax
import pytest

NUM_CPU_DEVICES = 8
jax.config.update('jax_num_cpu_devices', NUM_CPU_DEVICES)
# One persistent compilation cache for the whole suite (both xdist workers): tests that compile
# the same program (the tiny config's step, a table's rows) load it instead of compiling again.
jax.config.update('jax_compilation_cache_dir',
                  os.environ.get('JAXCV_TEST_XLA_CACHE',
                                 os.path.join(tempfile.gettempdir(), 'jaxcv-test-xla-cache')))

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get('JAXCV_TEST_DATA_DIR', REPO_ROOT.parent / 'shared' / 'data'))


@pytest.fixture(scope='session')
def shared_data_dir() -> Path:
  """The real datasets beside the repository; tests that need them skip when absent."""
  if not SHARED_DATA.is_dir():
    pytest.skip(f'real datasets not found at {SHARED_DATA} (set JAXCV_TEST_DATA_DIR)')
  return SHARED_DATA
