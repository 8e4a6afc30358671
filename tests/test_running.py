"""What the people who run jaxcv see: figures that leave a notebook's backend alone, a log line
per log step and TensorBoard events, a progress bar only where someone watches, a lean install
with accelerator extras, and command-line habits (the space form, misspelt booleans)."""

import io
import json
import logging
import re
import struct
import tomllib

import matplotlib
import pytest

from conftest import REPO_ROOT
from jaxcv import config as config_lib
from jaxcv import main as main_lib
from jaxcv import metrics, train
from jaxcv.errors import ConfigError

TINY = str(REPO_ROOT / 'tests' / 'configs' / 'tiny.py')


# ---------------------------------------------------------------------------- figures
PYPLOT = r'matplotlib\.use\(|import matplotlib\.pyplot|from matplotlib import pyplot'


def test_no_library_code_switches_the_matplotlib_backend():
  offenders = [str(p.relative_to(REPO_ROOT)) for folder in ('jaxcv', 'configs')
               for p in (REPO_ROOT / folder).rglob('*.py')
               if re.search(PYPLOT, p.read_text())]
  assert not offenders, f'draw on matplotlib.figure.Figure instead: {offenders}'


def test_plotting_keeps_the_backend(tmp_path):
  rows = [json.dumps({'step': i, 'train/loss': 1 / (i + 1)}) for i in range(4)]
  (tmp_path / 'm.jsonl').write_text('\n'.join(rows) + '\n')
  before = matplotlib.get_backend()
  matplotlib.use('svg')  # Any backend other than Agg stands in for a notebook's inline one.
  try:
    assert metrics.plot_curves(str(tmp_path / 'm.jsonl'), str(tmp_path / 'm.png'))
    assert matplotlib.get_backend() == 'svg'
    assert (tmp_path / 'm.png').read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
  finally:
    matplotlib.use(before)


# ---------------------------------------------------------------------------- logs
def _tensorboard_scalars(folder) -> dict[str, list[tuple[int, float]]]:
  """Scalars of TensorBoard event files, read from the record format (length, CRC, Event)."""
  from tensorboardX.proto import event_pb2  # pylint: disable=import-outside-toplevel
  scalars: dict[str, list] = {}
  for path in folder.glob('events.out.tfevents.*'):
    data = path.read_bytes()
    offset = 0
    while offset < len(data):
      (length,) = struct.unpack('<Q', data[offset:offset + 8])
      event = event_pb2.Event.FromString(data[offset + 12:offset + 12 + length])
      offset += 12 + length + 4
      for value in event.summary.value:
        scalars.setdefault(value.tag, []).append((event.step, value.simple_value))
  return scalars


def test_every_log_step_is_a_log_line_and_a_tensorboard_scalar(tmp_path, caplog):
  config = config_lib.load(TINY, ['total_steps=10', 'tensorboard=true'])
  with caplog.at_level(logging.INFO, logger='jaxcv.metrics'):
    train.run(config, str(tmp_path))
  lines = [r.getMessage() for r in caplog.records if r.name == 'jaxcv.metrics']
  pattern = (r'^step (\d+): loss [\d.e+-]+, accuracy [\d.e+-]+, lr [\d.e+-]+, [\d,]+ examples/s$')
  assert [int(re.match(pattern, line).group(1)) for line in lines] == [5, 10], lines
  scalars = _tensorboard_scalars(tmp_path / 'tensorboard')
  records = [json.loads(line) for line in open(tmp_path / 'metrics.jsonl')]
  logged = [(r['step'], r['train/loss']) for r in records if 'train/loss' in r]
  assert [s for s, _ in scalars['train/loss']] == [s for s, _ in logged] == [5, 10]
  assert [v for _, v in scalars['train/loss']] == pytest.approx([v for _, v in logged], rel=1e-6)
  assert 'learning_rate' in scalars and 'test/accuracy' in scalars


def test_no_tensorboard_folder_unless_asked(tmp_path):
  train.run(config_lib.load(TINY, ['total_steps=5']), str(tmp_path))
  assert not (tmp_path / 'tensorboard').exists()


class _Terminal(io.StringIO):
  def isatty(self):
    return True


def test_progress_bar_only_on_a_terminal(monkeypatch):
  monkeypatch.setattr('sys.stdout', io.StringIO())  # A batch job's log file.
  assert not metrics.interactive_output()
  assert metrics.Progress(10, 0)._bar is None  # pylint: disable=protected-access
  monkeypatch.setattr('sys.stdout', _Terminal())
  assert metrics.interactive_output()
  bar = metrics.Progress(10, 0)
  assert bar._bar is not None  # pylint: disable=protected-access
  bar.close()
  assert metrics.Progress(10, 0, enabled=False)._bar is None  # pylint: disable=protected-access


# ---------------------------------------------------------------------------- install
def test_plain_install_is_cpu_only_and_extras_bring_accelerator_builds():
  with open(REPO_ROOT / 'pyproject.toml', 'rb') as f:
    project = tomllib.load(f)['project']
  names = [re.split(r'[\[<>=; ]', d)[0].lower() for d in project['dependencies']]
  assert 'jax' in names and not any('cuda' in d or 'tpu' in d for d in project['dependencies'])
  for heavy in ('tensorflow', 'tensorflow-datasets', 'tensorboard', 'torch'):
    assert heavy not in names
  extras = project['optional-dependencies']
  assert any(d.startswith('jax[cuda12]') for d in extras['cuda'])
  assert any(d.startswith('jax[tpu]') for d in extras['tpu'])
  readme = (REPO_ROOT / 'README.md').read_text()
  assert '.[cuda]' in readme and '.[tpu]' in readme


# ---------------------------------------------------------------------------- command line
def test_config_overrides_in_the_space_form():
  args, overrides = main_lib.parse_args(
      ['--config', 'c.py', '--config.batch_size', '64', '--workdir', 'w',
       '--config.schedule.lr=0.1', '--config.data.name', 'folder:/data/x', '--config.seed', '-3'])
  assert args.workdir == 'w'
  assert overrides == ['batch_size=64', 'schedule.lr=0.1', 'data.name=folder:/data/x', 'seed=-3']
  config = config_lib.load(TINY, overrides[:2])
  assert config.batch_size == 64 and config.schedule.lr == 0.1


def test_an_override_without_a_value_is_one_error_line(capsys):
  with pytest.raises(SystemExit) as exit_info:
    main_lib.parse_args(['--config', 'c.py', '--workdir', 'w', '--config.batch_size'])
  assert exit_info.value.code == 2
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1 and err[0].startswith('error: --config.batch_size needs a value')


@pytest.mark.parametrize('raw, value', [('true', True), ('1', True), ('YES', True),
                                        ('false', False), ('0', False), ('no', False)])
def test_boolean_config_arguments(raw, value):
  assert config_lib.parse_arg(f'runlocal={raw}', runlocal=not value).runlocal is value


@pytest.mark.parametrize('raw', ['ture', 'flase', 'on?', ''])
def test_a_misspelt_boolean_config_argument_is_an_error(raw):
  with pytest.raises(ConfigError, match='runlocal'):
    config_lib.parse_arg(f'runlocal={raw}', runlocal=False)
