"""Runs a paper's table of runs: `python -m jaxcv.sweep --table configs/<paper>/table.py:PRESET`.

  python -m jaxcv.sweep --table configs/coin/table.py:cpu --workdir runs/coin
  python -m jaxcv.sweep --table configs/afd/table.py:gpu --workdir runs/afd --rows afd_s0 \
      --deadline 840
  python -m jaxcv.sweep --table configs/afd/table.py:cpu --workdir runs/afd --render_only

A table file defines `get_table(arg) -> Table` (see `Row`, `Column`, `Table` below and
docs/experiments.md). Every row is one run of the single loop (`train.run`) in
`<workdir>/<row>`, or a function call for analyses that are not a run. Rows run in dependency
order in this process (one jax start-up, shared dataset caches and compiled programs). The sweep

- skips rows that finished (their `summary.json` exists and their definition is unchanged),
- resumes a row that was interrupted (the loop resumes from the row's checkpoints),
- runs a row's dependencies first, marks rows whose dependency failed as `blocked`,
- stops starting rows once the `--deadline` would be overrun, recording them as `skipped`,
- keeps `rows.json` (status, reason, seconds of every row) current from the start, and
- renders `table.md`, `table.json` and `table.png` (rows grouped over seeds: mean, spread, n;
  the paper's numbers beside them) after every row, so a killed sweep still leaves a table.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import importlib
import json
import logging
import math
import os
import shutil
import sys
import time
import traceback
from typing import Any, Callable, Mapping, Optional, Sequence

import ml_collections

from jaxcv import config as config_lib
from jaxcv import specs
from jaxcv import workdir as workdir_lib
from jaxcv.errors import ConfigError, UserError

log = logging.getLogger('jaxcv.sweep')

PRESETS = ('runlocal', 'cpu', 'gpu')


# ---------------------------------------------------------------------------- declaring a table
@dataclasses.dataclass(frozen=True)
class Row:
  """One run of a table.

  A config row trains/evaluates `config:arg` with `overrides` (dotted key -> value, as
  `--config.KEY=VALUE`); a function row calls `fn` ('package.module:function') as
  `function(workdir=<row dir>, **kwargs)`, which returns a dict of metrics. In `arg`, override
  values and kwargs, '{ROW}' stands for the workdir of row ROW, which must be in `depends_on`.
  Rows sharing a `group` are repetitions (seeds) of one line of the table.
  """
  name: str
  config: str = ''
  arg: str = ''
  overrides: Mapping[str, Any] = dataclasses.field(default_factory=dict)
  depends_on: Sequence[str] = ()
  group: str = ''
  cost: float = 1.0
  fn: str = ''
  kwargs: Mapping[str, Any] = dataclasses.field(default_factory=dict)
  labels: Mapping[str, Any] = dataclasses.field(default_factory=dict)  # Shown as columns.
  show: bool = True  # False: a row others build on (a pre-training run), not a table line.

  @property
  def line(self) -> str:
    """The table line this row contributes to."""
    return self.group or self.name


@dataclasses.dataclass(frozen=True)
class Column:
  """A metric column: `key` of the rows' summary.json, times `scale` (100 for percentages)."""
  header: str
  key: str
  scale: float = 1.0
  digits: int = 2


@dataclasses.dataclass
class Table:
  """A paper's table: its rows, how to render them and the paper's numbers.

  `reference` maps a line (group or row name) to {column header: the paper's value}; it is
  printed beside ours. `labels` are Row.labels keys shown as leading columns. `spread` is 'std'
  (sample standard deviation) or 'sem' (standard error, as DomainBed prints). `render`, if
  given, is called as render(results, workdir) after the standard outputs, where results maps
  each finished row's name to its summary, for the paper's own figures.
  """
  name: str
  rows: list[Row]
  columns: list[Column]
  reference: Mapping[str, Mapping[str, Any]] = dataclasses.field(default_factory=dict)
  labels: Sequence[str] = ()
  claim: str = ''
  description: str = ''
  spread: str = 'std'
  plot_column: Optional[str] = None  # Header of the column drawn in table.png (default: first).
  render: Optional[Callable[[dict, str], None]] = None


def parse_table_arg(arg: Optional[str], **defaults) -> ml_collections.ConfigDict:
  """'cpu,seeds=3' -> {preset: 'cpu', seeds: 3}; the preset (first item) defaults to 'cpu'."""
  items = specs.split(arg, ',', 'table argument')
  preset = 'cpu'
  if items and '=' not in items[0]:
    preset = items.pop(0)
  if preset not in PRESETS:
    raise ConfigError(f'unknown table preset {preset!r}; known: {", ".join(PRESETS)}')
  parsed = config_lib.parse_arg(','.join(items), **defaults)  # Its own grammar: key=value, flag.
  parsed.preset = preset
  return parsed


def load_table(spec: str) -> Table:
  """`configs/<paper>/table.py[:arg]` -> the Table its get_table(arg) returns, checked."""
  path, _, arg = spec.partition(':')
  module = config_lib.load_module(path)
  if not hasattr(module, 'get_table'):
    raise ConfigError(f'{path} defines no get_table(arg)')
  table = module.get_table(arg or None)
  if not isinstance(table, Table):
    raise ConfigError(f'{path}: get_table returned {type(table).__name__}, not a jaxcv.sweep.Table')
  check_table(table)
  return table


def check_table(table: Table) -> None:
  """Unique names, known and acyclic dependencies, one kind per row, placeholders declared."""
  names = [row.name for row in table.rows]
  duplicates = sorted({n for n in names if names.count(n) > 1})
  if duplicates:
    raise ConfigError(f'table {table.name}: duplicate row names {duplicates}')
  known = set(names)
  for row in table.rows:
    if bool(row.config) == bool(row.fn):
      raise ConfigError(f'row {row.name}: give exactly one of config= and fn=')
    unknown = sorted(set(row.depends_on) - known)
    if unknown:
      raise ConfigError(f'row {row.name} depends on unknown rows {unknown}')
    for text in _texts(row):
      for other in known - set(row.depends_on):
        if '{' + other + '}' in text:
          raise ConfigError(f'row {row.name} uses {{{other}}} but does not depend on {other}')
  run_order(table.rows, names)  # Raises on cycles.


def _texts(row: Row) -> list[str]:
  return [row.arg, *(str(v) for v in row.overrides.values()),
          *(str(v) for v in row.kwargs.values())]


def run_order(rows: Sequence[Row], selected: Sequence[str]) -> list[Row]:
  """The selected rows and everything they depend on, dependencies first (else table order)."""
  by_name = {row.name: row for row in rows}
  order: list[Row] = []
  state: dict[str, str] = {}

  def visit(name: str, path: tuple[str, ...]):
    if state.get(name) == 'done':
      return
    if state.get(name) == 'visiting':
      raise ConfigError(f'dependency cycle: {" -> ".join(path + (name,))}')
    state[name] = 'visiting'
    for dep in by_name[name].depends_on:
      visit(dep, path + (name,))
    state[name] = 'done'
    order.append(by_name[name])

  for name in selected:
    if name not in by_name:
      raise ConfigError(f'unknown row {name!r}; rows: {", ".join(by_name)}')
    visit(name, ())
  return order


# ---------------------------------------------------------------------------- running
def _substitute(value: Any, workdirs: Mapping[str, str]) -> Any:
  """`value` with '{ROW}' replaced by row ROW's workdir, inside strings, lists and dicts."""
  if isinstance(value, Mapping):
    return {k: _substitute(v, workdirs) for k, v in value.items()}
  if isinstance(value, (list, tuple)):
    return type(value)(_substitute(v, workdirs) for v in value)
  if isinstance(value, str):
    for name, path in workdirs.items():
      value = value.replace('{' + name + '}', path)
  return value


def _override_text(key: str, value: Any) -> str:
  if isinstance(value, (tuple, list, dict)):
    value = repr(value)
  return f'{key}={value}'


def fingerprint(row: Row) -> str:
  """Identifies what a row computes; a finished row whose definition changed is not reused."""
  text = json.dumps([row.config, row.arg, sorted((k, str(v)) for k, v in row.overrides.items()),
                     row.fn, sorted((k, str(v)) for k, v in row.kwargs.items())])
  return hashlib.sha256(text.encode()).hexdigest()[:16]


def row_summary(workdir: str, row: Row) -> Optional[dict]:
  """The finished row's metrics, or None when it has not finished (or was defined otherwise)."""
  row_dir = os.path.join(workdir, row.name)
  summary = workdir_lib.read_json(os.path.join(row_dir, 'summary.json'))
  if summary is None:
    return None
  marker = workdir_lib.read_json(os.path.join(row_dir, 'row.json')) or {}
  if marker.get('fingerprint', fingerprint(row)) != fingerprint(row):
    raise ConfigError(f'row {row.name} in {row_dir} finished with another definition; remove '
                      'that folder or give the changed row a new name')
  return summary


def _plain(value: Any) -> Any:
  """JSON for numpy scalars and arrays (`tolist`), text for anything else."""
  return value.tolist() if hasattr(value, 'tolist') else str(value)


def _run_row(row: Row, row_dir: str, workdirs: Mapping[str, str],
             overrides: Sequence[str]) -> dict:
  """Runs one row to completion and returns its summary."""
  os.makedirs(row_dir, exist_ok=True)
  workdir_lib.write_json(os.path.join(row_dir, 'row.json'),
                         {'fingerprint': fingerprint(row), **dataclasses.asdict(row)})
  if row.fn:
    module_name, _, function_name = row.fn.partition(':')
    function = getattr(importlib.import_module(module_name), function_name)
    kwargs = {k: _substitute(v, workdirs) for k, v in row.kwargs.items()}
    # Plain JSON: numpy scalars and arrays in a function's metrics become numbers and lists.
    metrics = function(workdir=row_dir, **kwargs)
    summary = json.loads(json.dumps(metrics, default=_plain))
    workdir_lib.write_json(os.path.join(row_dir, 'summary.json'), summary)
    return summary
  from jaxcv import train  # pylint: disable=import-outside-toplevel  (keeps --help fast)
  row_overrides = [_override_text(k, _substitute(v, workdirs)) for k, v in row.overrides.items()]
  config = config_lib.load(f'{row.config}:{_substitute(row.arg, workdirs)}',
                           [*row_overrides, *overrides])
  return train.run(config, row_dir)


def run_table(table_spec: str, workdir: str, rows: Optional[Sequence[str]] = None,
              deadline: float = 0.0, overrides: Sequence[str] = (),
              start_time: Optional[float] = None) -> list[dict]:
  """Runs the table's rows (all, or `rows` and their dependencies) into workdir/<row>.

  Returns one record per row (name, status, reason, seconds), also kept in workdir/rows.json;
  statuses: ok, failed, blocked (a dependency did not finish), skipped (deadline), not run,
  running (only while it runs, or when the process died in it). `deadline` is in seconds from
  `start_time` (default: now); 0 means none.
  """
  start_time = time.perf_counter() if start_time is None else start_time
  table = load_table(table_spec)
  order = run_order(table.rows, rows or [row.name for row in table.rows])
  with workdir_lib.lock(workdir):  # One sweep per workdir; each row's run locks its own folder.
    return _run_rows(table, order, workdir, deadline, overrides, start_time)


def _run_rows(table: Table, order: list[Row], workdir: str, deadline: float,
              overrides: Sequence[str], start_time: float) -> list[dict]:
  rows_path = os.path.join(workdir, 'rows.json')
  previous = {r['name']: r for r in (workdir_lib.read_json(rows_path) or []) if isinstance(r, dict)}
  records = [{'name': row.name, 'status': 'not run', 'reason': '',
              'seconds': previous.get(row.name, {}).get('seconds')} for row in order]
  by_name = {r['name']: r for r in records}
  workdirs = {row.name: os.path.join(workdir, row.name) for row in table.rows}
  common_overrides = ['progress_bar=false', *overrides]  # One log line per interval, no bars.
  per_cost: list[float] = []

  def save(render: bool = True):
    workdir_lib.write_json(rows_path, records)
    if render:  # After a row ran: its result belongs in the table now.
      write_outputs(table, workdir, records)

  save()
  for row in order:
    record = by_name[row.name]
    if row_summary(workdir, row) is not None:
      record.update(status='ok', reason='finished earlier')
      continue
    failed_deps = [d for d in row.depends_on if by_name[d]['status'] != 'ok']
    if failed_deps:
      record.update(status='blocked', reason=f'needs {", ".join(failed_deps)}')
      save(render=False)
      continue
    elapsed = time.perf_counter() - start_time
    # Optimistic: the fastest row so far per unit cost (rows that reuse compiled programs are
    # faster than the first); an overrun loses only the last row to the caller's time limit.
    estimate = min(per_cost) * row.cost if per_cost else 0.0
    if deadline and elapsed + estimate > deadline:
      record.update(status='skipped',
                    reason=f'deadline: {elapsed:.0f} s spent, row needs ~{estimate:.0f} s of '
                           f'{deadline:.0f} s')
      log.warning('skipping %s (%s)', row.name, record['reason'])
      save(render=False)
      continue
    log.info('row %s: %s', row.name, row.fn or f'{row.config}:{row.arg}')
    record.update(status='running', reason='started; a rerun resumes it')
    save(render=False)
    row_start = time.perf_counter()
    try:
      _run_row(row, workdirs[row.name], workdirs, common_overrides)
      record.update(status='ok', reason='')
    except UserError as e:  # A mistake in the row (config, data): one line, the table goes on.
      log.error('row %s: %s', row.name, e)
      record.update(status='failed', reason=f'{type(e).__name__}: {e}'[:500])
    except Exception as e:  # pylint: disable=broad-except  (one failed row must not end the table)
      log.error('row %s failed:\n%s', row.name, traceback.format_exc())
      record.update(status='failed', reason=f'{type(e).__name__}: {e}'[:500])
    record['seconds'] = round(time.perf_counter() - row_start, 1)
    if record['status'] == 'ok':
      per_cost.append(record['seconds'] / max(row.cost, 1e-9))
    log.info('row %s: %s in %.1f s', row.name, record['status'], record['seconds'])
    save()
  save()  # The final statuses of skipped, blocked and earlier-finished rows.
  return records


# ---------------------------------------------------------------------------- rendering
def _mean_spread(values: list[float], spread: str) -> tuple[float, Optional[float]]:
  mean = sum(values) / len(values)
  if len(values) < 2:
    return mean, None
  std = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))
  return mean, (std / math.sqrt(len(values)) if spread == 'sem' else std)


def table_lines(table: Table, results: Mapping[str, dict],
                statuses: Mapping[str, dict]) -> list[dict]:
  """One entry per table line (group): labels, per column mean/spread/n, reference, statuses."""
  lines: dict[str, dict] = {}
  for row in table.rows:
    if not row.show:
      continue
    line = lines.setdefault(row.line, {'line': row.line, 'rows': [], 'labels': dict(row.labels),
                                       'columns': {}, 'reference': dict(
                                           table.reference.get(row.line, {}))})
    status = statuses.get(row.name, {}).get('status', 'not run')
    line['rows'].append({'name': row.name, 'status': 'ok' if row.name in results else status,
                         'reason': statuses.get(row.name, {}).get('reason', '')})
  for line in lines.values():
    for column in table.columns:
      values = [float(results[r['name']][column.key]) * column.scale for r in line['rows']
                if r['name'] in results and results[r['name']].get(column.key) is not None]
      if values:
        mean, spread = _mean_spread(values, table.spread)
        line['columns'][column.header] = {'mean': mean, 'spread': spread, 'n': len(values),
                                          'values': values}
  return list(lines.values())


def _cell(entry: Optional[dict], digits: int) -> str:
  if not entry:
    return '-'
  text = f'{entry["mean"]:.{digits}f}'
  if entry['spread'] is not None:
    text += f' ± {entry["spread"]:.{digits}f}'
  return text


def markdown(table: Table, lines: list[dict], records: Sequence[dict]) -> str:
  headers = [*table.labels, *[c.header for c in table.columns]]
  has_reference = any(line['reference'] for line in lines)
  out = [f'# {table.name}', '']
  if table.description:
    out += [table.description, '']
  if table.claim:
    out += [f'Claim: {table.claim}', '']
  spread = 'standard error' if table.spread == 'sem' else 'standard deviation'
  out += [f'Mean ± {spread} over the line\'s runs (n = runs with a result).'
          + (' Paper: the reference numbers, in brackets.' if has_reference else ''), '']
  out.append('| line | ' + ' | '.join(headers) + ' | n | status |')
  out.append('|---' * (len(headers) + 3) + '|')
  for line in lines:
    cells = [str(line['labels'].get(label, '')) for label in table.labels]
    for column in table.columns:
      cell = _cell(line['columns'].get(column.header), column.digits)
      if column.header in line['reference']:
        cell += f' [{line["reference"][column.header]}]'
      cells.append(cell)
    n = max((c['n'] for c in line['columns'].values()), default=0)
    states = sorted({r['status'] for r in line['rows']})
    status = ', '.join(states) if states != ['ok'] else 'ok'
    out.append(f'| {line["line"]} | ' + ' | '.join(cells) + f' | {n} | {status} |')
  problems = [r for r in records if r['status'] not in ('ok',)]
  if problems:
    out += ['', 'Rows without a result:', '']
    out += [f'- {r["name"]}: {r["status"]}{": " + r["reason"] if r["reason"] else ""}'
            for r in problems]
  return '\n'.join(out) + '\n'


def plot(table: Table, lines: list[dict], path: str) -> bool:
  """A bar chart of one column per line, with the spread as error bars; False if no data."""
  header = table.plot_column or (table.columns[0].header if table.columns else None)
  points = [(line['line'], line['columns'][header]) for line in lines
            if header in line['columns']]
  if not points:
    return False
  from matplotlib.figure import Figure  # pylint: disable=import-outside-toplevel
  fig = Figure(figsize=(max(4.0, 0.6 * len(points) + 1.5), 3.6))
  ax = fig.add_subplot()
  ax.bar(range(len(points)), [p['mean'] for _, p in points],
         yerr=[p['spread'] or 0.0 for _, p in points], capsize=3, color='tab:blue')
  for x, (line, _) in enumerate(points):
    ref = next((l['reference'].get(header) for l in lines if l['line'] == line), None)
    if isinstance(ref, (int, float)):
      ax.plot([x - 0.4, x + 0.4], [ref, ref], color='tab:red', lw=2,
              label='paper' if x == 0 or not ax.get_legend_handles_labels()[0] else None)
  ax.set_xticks(range(len(points)), [line for line, _ in points], rotation=45, ha='right',
                fontsize=8)
  ax.set_ylabel(header)
  ax.set_title(table.name, fontsize=10)
  if ax.get_legend_handles_labels()[0]:
    ax.legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  return True


def collect_results(table: Table, workdir: str) -> dict[str, dict]:
  """Summaries of the rows that finished."""
  results = {}
  for row in table.rows:
    try:
      summary = row_summary(workdir, row)
    except ConfigError:
      summary = None
    if summary is not None:
      results[row.name] = summary
  return results


def write_outputs(table: Table, workdir: str, records: Sequence[dict]) -> None:
  """table.md, table.json, table.png and the table's own render hook, from what exists."""
  results = collect_results(table, workdir)
  statuses = {r['name']: r for r in records}
  lines = table_lines(table, results, statuses)
  with open(os.path.join(workdir, 'table.md'), 'w') as f:
    f.write(markdown(table, lines, records))
  workdir_lib.write_json(os.path.join(workdir, 'table.json'),
              {'name': table.name, 'claim': table.claim, 'description': table.description,
               'spread': table.spread, 'lines': lines, 'rows': list(records)})
  plot(table, lines, os.path.join(workdir, 'table.png'))
  if table.render is not None and results:
    try:
      table.render(results, workdir)
    except Exception:  # pylint: disable=broad-except  (a figure must not lose the table)
      log.error('render of %s failed:\n%s', table.name, traceback.format_exc())


def export(workdir: str, destination: str, max_bytes: int = 5 << 20) -> list[str]:
  """Copies a sweep's results without its checkpoints (for results/ folders and GPU runs):
  the table outputs and every file of the rows' folders except checkpoints and files over
  `max_bytes`. Returns the copied paths, relative to `destination`."""
  copied = []
  for root, folders, files in os.walk(workdir):
    folders[:] = [f for f in folders if f != 'checkpoints']
    for name in files:
      source = os.path.join(root, name)
      if os.path.getsize(source) > max_bytes or '.tmp' in name or name == '.lock':
        continue
      relative = os.path.relpath(source, workdir)
      os.makedirs(os.path.dirname(os.path.join(destination, relative)), exist_ok=True)
      shutil.copy2(source, os.path.join(destination, relative))
      copied.append(relative)
  return sorted(copied)


# ---------------------------------------------------------------------------- command line
def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--table', required=True, help='configs/<paper>/table.py[:PRESET,k=v]')
  parser.add_argument('--workdir', default='', help='where the rows run (needed unless --list)')
  parser.add_argument('--rows', default='', help='comma-separated rows (and their dependencies)')
  parser.add_argument('--deadline', type=float, default=0.0,
                      help='seconds after which no row starts that would overrun (0: none)')
  parser.add_argument('--override', action='append', default=[],
                      help='KEY=VALUE for every config row, repeatable')
  parser.add_argument('--render_only', action='store_true', help='only rewrite the table')
  parser.add_argument('--list', action='store_true', help='print the rows and exit')
  parser.add_argument('--export', default='',
                      help='afterwards, copy the results (no checkpoints) to this folder')
  args = parser.parse_args(argv)
  if not args.workdir and not args.list:
    parser.error('--workdir is required')
  start = time.perf_counter()
  logging.basicConfig(level=logging.INFO, format='%(asctime)s %(levelname)s %(message)s',
                      datefmt='%H:%M:%S', stream=sys.stdout, force=True)
  logging.getLogger('absl').setLevel(logging.WARNING)  # orbax's per-save INFO lines.
  try:
    if args.list or args.render_only:
      table = load_table(args.table)
      if args.list:
        for row in table.rows:
          print(f'{row.name:28s} cost {row.cost:5.1f}  '
                f'{row.fn or row.config + ":" + row.arg}'
                + (f'  after {",".join(row.depends_on)}' if row.depends_on else ''))
        return 0
      records = workdir_lib.read_json(os.path.join(args.workdir, 'rows.json')) or []
      write_outputs(table, args.workdir, records)
      if args.export:
        export(args.workdir, args.export)
      with open(os.path.join(args.workdir, 'table.md')) as f:
        print(f.read())
      return 0
    names = [r for r in args.rows.split(',') if r]
    records = run_table(args.table, args.workdir, names or None, args.deadline, args.override,
                        start)
  except UserError as e:
    print(f'error: {e}', file=sys.stderr)
    return 2
  if args.export:
    log.info('exported %d files to %s', len(export(args.workdir, args.export)), args.export)
  counts = {s: sum(r['status'] == s for r in records) for s in {r['status'] for r in records}}
  log.info('%s in %.0f s; table: %s', counts, time.perf_counter() - start,
           os.path.join(args.workdir, 'table.md'))
  return 1 if any(r['status'] in ('failed', 'blocked') for r in records) else 0


if __name__ == '__main__':
  # Run as the importable module, so that tables (which import jaxcv.sweep) and this driver
  # share one Row/Table class, not one from __main__ and one from jaxcv.sweep.
  from jaxcv import sweep as _sweep  # pylint: disable=import-self
  sys.exit(_sweep.main())
