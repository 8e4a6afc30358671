"""jax's persistent compilation cache, on by default: a second run of the same program (a resumed
run, a table's next seed, the same model in another row) loads its compiled executables from
disk instead of compiling them again.

The cache lives in `$JAXCV_CACHE_DIR/xla` (default `~/.cache/jaxcv/xla`; `JAXCV_CACHE_DIR=off`
disables it with the other jaxcv caches). A cache the user chose (`JAX_COMPILATION_CACHE_DIR` or
`jax.config.update('jax_compilation_cache_dir', ...)`) is left as it is. Only programs that took
a second or more to compile are stored: the small ones recompile faster than they load.
"""

from __future__ import annotations

import logging

import jax

from jaxcv.data import cache

log = logging.getLogger(__name__)

MIN_COMPILE_SECONDS = 1.0


def enable() -> None:
  """Points jax at jaxcv's cache folder unless a cache is already configured or caching is off."""
  if jax.config.jax_compilation_cache_dir:
    return
  root = cache.cache_dir()
  if root is None:
    return
  jax.config.update('jax_compilation_cache_dir', str(root / 'xla'))
  jax.config.update('jax_persistent_cache_min_compile_time_secs', MIN_COMPILE_SECONDS)
  log.info('persistent compilation cache: %s', root / 'xla')
