"""Config loading, overrides, validation and the command line's error handling."""

import subprocess
import sys

import pytest

from jaxcv import config as config_lib
from jaxcv.errors import ConfigError

from conftest import REPO_ROOT

QUICKSTART = str(REPO_ROOT / 'configs' / 'quickstart.py')


def test_parse_arg_types_and_flags():
  arg = config_lib.parse_arg('runlocal,epochs=3,width=8,name=b', runlocal=False, epochs=1.0,
                             width=16, name='a')
  assert arg.runlocal is True and arg.epochs == 3.0 and arg.width == 8 and arg.name == 'b'
  with pytest.raises(ConfigError, match='unknown config argument'):
    config_lib.parse_arg('nope=1', runlocal=False)
  with pytest.raises(ConfigError, match='not a int'):
    config_lib.parse_arg('width=wide', width=16)


def test_load_applies_overrides_with_types():
  config = config_lib.load(QUICKSTART, ['batch_size=64', 'schedule.lr=0.05',
                                        'optimizer.nesterov=false', 'data.data_dir=/x',
                                        'total_steps=7'])
  assert config.batch_size == 64 and config.schedule.lr == 0.05
  assert config.optimizer.nesterov is False and config.data.data_dir == '/x'
  assert config.total_steps == 7


@pytest.mark.parametrize('override, message', [
    ('batch_sise=64', 'unknown config key'),
    ('schedule.lrr=1', 'unknown config key'),
    ('batch_size=big', 'expected a int'),
    ('optimizer.nesterov=maybe', 'expected true or false'),
    ('dtype=float16', 'dtype must be one of'),
    ('batch_size=0', 'batch_size must be positive'),
])
def test_bad_overrides_are_config_errors(override, message):
  with pytest.raises(ConfigError, match=message):
    config_lib.load(QUICKSTART, [override])


def test_config_is_locked():
  config = config_lib.load(QUICKSTART)
  with pytest.raises(AttributeError):
    config.new_key = 1


def test_runlocal_shrinks():
  config = config_lib.load(QUICKSTART + ':runlocal')
  assert config.total_steps == 10 and config.batch_size <= 32
  assert config.data.train_examples == 256 and config.evals.test.max_examples == 256


def test_missing_config_file():
  with pytest.raises(ConfigError, match='does not exist'):
    config_lib.load('configs/nope.py')


def _main(*args, env=None):
  return subprocess.run([sys.executable, '-m', 'jaxcv.main', *args], capture_output=True,
                        text=True, cwd=REPO_ROOT, env=env, timeout=300)


def test_cli_unknown_key_is_one_line_error(tmp_path):
  result = _main('--config', QUICKSTART, '--workdir', str(tmp_path), '--config.bach_size=8')
  assert result.returncode == 2
  assert 'error: unknown config key' in result.stderr
  assert 'Traceback' not in result.stderr


def test_cli_missing_dataset_is_one_line_error(tmp_path):
  result = _main('--config', QUICKSTART + ':runlocal', '--workdir', str(tmp_path),
                 '--config.data.name=cifar10', f'--config.data.data_dir={tmp_path}')
  assert result.returncode == 2, result.stderr
  assert 'error:' in result.stderr and 'cifar10' in result.stderr
  assert 'Traceback' not in result.stderr


def test_cli_batch_not_divisible_by_devices(tmp_path):
  result = _main('--config', QUICKSTART + ':runlocal', '--workdir', str(tmp_path),
                 '--cpu_devices', '8', '--config.batch_size=12')
  assert result.returncode == 2, result.stderr
  assert 'not divisible by the 8 devices' in result.stderr
  assert 'Traceback' not in result.stderr


def test_cli_help_explains_overrides():
  result = _main('--help')
  assert result.returncode == 0
  assert '--config.KEY=VALUE' in result.stdout and 'runlocal' in result.stdout


def test_cli_nan_loss_is_one_line_error(tmp_path):
  tiny = str(REPO_ROOT / 'tests' / 'configs' / 'tiny.py')
  result = _main('--config', tiny, '--workdir', str(tmp_path), '--config.schedule.lr=1e30',
                 '--config.schedule.warmup_steps=0')
  assert result.returncode == 2, result.stderr[-2000:]
  assert 'error: the training loss became nan' in result.stderr
  assert 'Traceback' not in result.stderr
  assert not (tmp_path / 'checkpoints' / '5').exists()  # Nothing saved after the NaN.
