"""The table driver (jaxcv.sweep): declaration checks, dependency order and placeholders,
grouped rendering, deadlines, failures, and a kill -9 of a sweep mid-row followed by a resume."""

import json
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from jaxcv import sweep
from jaxcv.errors import ConfigError

from conftest import REPO_ROOT

TINY = str(REPO_ROOT / 'tests' / 'configs' / 'tiny.py')

# A table package of its own, as a paper's configs/<paper>/ folder is: rows of the tiny config,
# a fine-tuning row that starts from another row's weights, and function rows whose metrics are
# known so that the rendered means and spreads can be checked exactly.
TABLE = '''
from jaxcv.sweep import Column, Row, Table, parse_table_arg

TINY = {tiny!r}


def fixed_metrics(workdir, value, source=''):
  del workdir
  return {{'score': float(value), 'source': source}}


def get_table(arg=None):
  a = parse_table_arg(arg, steps=4, ft_steps=2, fail=False)
  rows = [
      Row('pretrain', config=TINY, arg=f'steps={{a.steps}}', cost=1.0),
      Row('finetune', config=TINY, arg=f'steps={{a.ft_steps}}', depends_on=('pretrain',),
          overrides={{'init_checkpoint': '{{pretrain}}', 'schedule.lr': 0.01}}),
      Row('m_s0', fn='{pkg}.table:fixed_metrics', kwargs={{'value': 1.0}}, group='method'),
      Row('m_s1', fn='{pkg}.table:fixed_metrics', kwargs={{'value': 2.0}}, group='method'),
      Row('after', fn='{pkg}.table:fixed_metrics', depends_on=('finetune',),
          kwargs={{'value': 5.0, 'source': '{{finetune}}'}}),
  ]
  if a.fail:
    rows.append(Row('broken', config=TINY, arg='steps=2', overrides={{'no_such_key': 1}}))
    rows.append(Row('needs_broken', fn='{pkg}.table:fixed_metrics', kwargs={{'value': 0}},
                    depends_on=('broken',)))
  return Table(name='tiny table', rows=rows,
               columns=[Column('Score', 'score'), Column('Acc', 'test/accuracy', scale=100)],
               reference={{'method': {{'Score': 1.4}}}}, claim='the method scores above 1')
'''


@pytest.fixture
def table_spec(tmp_path):
  """A table package written to a fresh folder; returns its table.py path."""
  pkg = f'sweeptables_{tmp_path.name}'.replace('-', '_')
  folder = tmp_path / 'tables' / pkg
  folder.mkdir(parents=True)
  (folder / '__init__.py').write_text('')
  (folder / 'table.py').write_text(TABLE.format(tiny=TINY, pkg=pkg))
  return str(folder / 'table.py')


def _records(workdir):
  return {r['name']: r for r in json.loads((workdir / 'rows.json').read_text())}


def test_table_arguments_presets_and_types():
  parsed = sweep.parse_table_arg('gpu,seeds=3', seeds=2, fast=False)
  assert (parsed.preset, parsed.seeds, parsed.fast) == ('gpu', 3, False)
  assert sweep.parse_table_arg(None, seeds=2).preset == 'cpu'
  assert sweep.parse_table_arg('runlocal').preset == 'runlocal'
  with pytest.raises(ConfigError, match='unknown table preset'):
    sweep.parse_table_arg('tpu')
  with pytest.raises(ConfigError, match='unknown config argument'):
    sweep.parse_table_arg('cpu,nope=1', seeds=2)


@pytest.mark.parametrize('rows, message', [
    ([sweep.Row('a', fn='m:f'), sweep.Row('a', fn='m:f')], 'duplicate row names'),
    ([sweep.Row('a', fn='m:f', depends_on=('z',))], 'unknown rows'),
    ([sweep.Row('a', fn='m:f', depends_on=('b',)), sweep.Row('b', fn='m:f', depends_on=('a',))],
     'dependency cycle'),
    ([sweep.Row('a', fn='m:f'), sweep.Row('b', fn='m:f', kwargs={'x': '{a}'})],
     'does not depend on a'),
    ([sweep.Row('a')], 'exactly one of config= and fn='),
])
def test_bad_tables_are_rejected(rows, message):
  with pytest.raises(ConfigError, match=message):
    sweep.check_table(sweep.Table(name='t', rows=rows, columns=[]))


def test_run_order_puts_dependencies_first():
  rows = [sweep.Row('c', fn='m:f', depends_on=('b',)), sweep.Row('a', fn='m:f'),
          sweep.Row('b', fn='m:f', depends_on=('a',))]
  assert [r.name for r in sweep.run_order(rows, ['c'])] == ['a', 'b', 'c']
  assert [r.name for r in sweep.run_order(rows, ['a'])] == ['a']


def test_table_runs_chains_renders_and_skips_finished_rows(tmp_path, table_spec):
  workdir = tmp_path / 'sweep'
  records = sweep.run_table(f'{table_spec}:runlocal', str(workdir))
  assert {r['name']: r['status'] for r in records} == dict.fromkeys(
      ['pretrain', 'finetune', 'm_s0', 'm_s1', 'after'], 'ok')
  # The fine-tuning row started from the pre-training row's weights; the function row got the
  # fine-tuning row's workdir.
  finetune_config = json.loads((workdir / 'finetune' / 'config.json').read_text())
  assert finetune_config['init_checkpoint'] == str(workdir / 'pretrain')
  assert finetune_config['schedule']['lr'] == 0.01
  after = json.loads((workdir / 'after' / 'summary.json').read_text())
  assert after['source'] == str(workdir / 'finetune')
  table = json.loads((workdir / 'table.json').read_text())
  method = next(line for line in table['lines'] if line['line'] == 'method')
  assert method['columns']['Score']['mean'] == pytest.approx(1.5)
  assert method['columns']['Score']['spread'] == pytest.approx(2 ** 0.5 / 2)  # Sample std.
  assert method['columns']['Score']['n'] == 2
  text = (workdir / 'table.md').read_text()
  assert '1.50 ± 0.71 [1.4]' in text and 'the method scores above 1' in text
  assert (workdir / 'table.png').is_file()
  # A second sweep reruns nothing.
  again = sweep.run_table(f'{table_spec}:runlocal', str(workdir), rows=['after'])
  assert [r['reason'] for r in again] == ['finished earlier'] * 3


def test_changed_row_definition_is_not_reused(tmp_path, table_spec):
  workdir = tmp_path / 'sweep'
  sweep.run_table(f'{table_spec}:runlocal', str(workdir), rows=['pretrain'])
  with pytest.raises(ConfigError, match='another definition'):
    sweep.run_table(f'{table_spec}:runlocal,steps=6', str(workdir), rows=['pretrain'])


def test_failed_row_blocks_its_dependents_and_the_rest_runs(tmp_path, table_spec):
  workdir = tmp_path / 'sweep'
  records = {r['name']: r for r in sweep.run_table(
      f'{table_spec}:runlocal,fail=true', str(workdir), rows=['broken', 'needs_broken', 'm_s0'])}
  assert records['broken']['status'] == 'failed' and 'no_such_key' in records['broken']['reason']
  assert records['needs_broken']['status'] == 'blocked'
  assert records['m_s0']['status'] == 'ok'
  assert 'needs_broken: blocked' in (workdir / 'table.md').read_text()


def test_deadline_skips_rows_and_records_why(tmp_path, table_spec):
  workdir = tmp_path / 'sweep'
  records = sweep.run_table(f'{table_spec}:runlocal', str(workdir), rows=['m_s0', 'm_s1'],
                            deadline=1e-9)
  assert [r['status'] for r in records] == ['skipped', 'skipped']
  assert 'deadline' in records[0]['reason']
  assert _records(workdir)['m_s1']['status'] == 'skipped'


def test_unknown_row_is_one_error_line(tmp_path, table_spec):
  result = subprocess.run(
      [sys.executable, '-m', 'jaxcv.sweep', '--table', f'{table_spec}:runlocal', '--workdir',
       str(tmp_path / 'w'), '--rows', 'nope'], cwd=REPO_ROOT, capture_output=True, text=True,
      timeout=120)
  assert result.returncode == 2
  assert result.stderr.strip().splitlines()[-1].startswith("error: unknown row 'nope'")


def test_sweep_killed_mid_row_resumes_only_the_unfinished_row(tmp_path, table_spec):
  """kill -9 while the second row trains: the rerun keeps the first, resumes the second."""
  workdir = tmp_path / 'sweep'
  log_path = tmp_path / 'log.txt'

  def start():
    log = open(log_path, 'a')  # A file, not a pipe: a full pipe would block the run.
    return subprocess.Popen(
        [sys.executable, '-m', 'jaxcv.sweep', '--table',
         f'{table_spec}:runlocal,steps=4,ft_steps=300', '--workdir', str(workdir),
         '--rows', 'finetune', '--override', 'checkpoint_every_steps=10'],
        cwd=REPO_ROOT, stdout=log, stderr=log)

  process = start()  # Killed at the fine-tuning row's first checkpoint.
  checkpoints = workdir / 'finetune' / 'checkpoints'
  deadline = time.time() + 300
  while time.time() < deadline:
    if checkpoints.is_dir() and any(p.name.isdigit() for p in checkpoints.iterdir()):
      break
    assert process.poll() is None, log_path.read_text()[-3000:]
    time.sleep(0.02)
  process.send_signal(signal.SIGKILL)
  process.wait()
  assert not (workdir / 'finetune' / 'summary.json').exists(), 'the row finished before the kill'
  assert _records(workdir)['finetune']['status'] == 'running'
  assert (workdir / 'pretrain' / 'summary.json').exists()
  restarted = start()
  assert restarted.wait(timeout=300) == 0, log_path.read_text()[-3000:]
  first, second = log_path.read_text().split(f'row finetune: {TINY}')[1:]  # Its two starts.
  assert f'row pretrain: {TINY}' not in second  # Not rerun.
  assert 'resumed from step' in second and 'resumed from step' not in first
  records = _records(workdir)
  assert records['pretrain']['reason'] == 'finished earlier'
  assert records['finetune']['status'] == 'ok'
  assert json.loads((workdir / 'finetune' / 'summary.json').read_text())['steps'] == 300


def test_a_second_sweep_on_the_same_workdir_is_refused(tmp_path, table_spec):
  from jaxcv import workdir as workdir_lib  # pylint: disable=import-outside-toplevel
  with workdir_lib.lock(str(tmp_path / 'sweep')):
    result = subprocess.run(
        [sys.executable, '-m', 'jaxcv.sweep', '--table', f'{table_spec}:runlocal', '--workdir',
         str(tmp_path / 'sweep'), '--rows', 'm_s0'], cwd=REPO_ROOT, capture_output=True,
        text=True, timeout=120)
  assert result.returncode == 2
  assert 'is in use by pid' in result.stderr.strip().splitlines()[-1]
