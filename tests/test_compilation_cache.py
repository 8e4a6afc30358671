"""The persistent compilation cache is on by default, in jaxcv's cache folder, and leaves a cache
the user chose alone (checked in fresh interpreters: jax reads the setting once)."""

import subprocess
import sys

from conftest import REPO_ROOT

PROBE = '''
import jax
from jaxcv import compilation_cache
compilation_cache.enable()
print(jax.config.jax_compilation_cache_dir)
'''


def _probe(env):
  result = subprocess.run([sys.executable, '-c', PROBE], cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=120, env=env)
  assert result.returncode == 0, result.stderr
  return result.stdout.strip().splitlines()[-1]


def test_on_by_default_in_jaxcvs_cache_folder(tmp_path):
  env = {'PATH': '/usr/bin:/bin', 'HOME': str(tmp_path), 'JAXCV_CACHE_DIR': str(tmp_path / 'c')}
  assert _probe(env) == str(tmp_path / 'c' / 'xla')


def test_a_users_cache_and_off_are_respected(tmp_path):
  env = {'PATH': '/usr/bin:/bin', 'HOME': str(tmp_path),
         'JAX_COMPILATION_CACHE_DIR': str(tmp_path / 'mine')}
  assert _probe(env) == str(tmp_path / 'mine')
  assert _probe({'PATH': '/usr/bin:/bin', 'HOME': str(tmp_path), 'JAXCV_CACHE_DIR': 'off'}) \
      == 'None'
