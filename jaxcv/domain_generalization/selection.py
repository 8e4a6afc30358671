"""DomainBed's model selection over finished jaxcv runs (model_selection.py, collect_results.py).

A run is one training job: one test environment, one trial (the in/out split seed,
domainbed(seed=...)), one hyperparameter draw. It reports, at each evaluation step, the metrics
the evaluators in `splits.evals_config()` write to metrics.jsonl:
  val/acc/mean       mean accuracy over the source environments' `out` parts
  test_in/acc/mean   the test environment's `in` accuracy (what is reported)
  test_out/acc/mean  the test environment's `out` accuracy (the oracle's validation)

Methods:
  training_domain  (IIDAccuracySelectionMethod) within a run, the eval step with the best
                   val/acc/mean; across hyperparameter draws, the run with the best such value;
                   report test_in at that step.
  oracle           (OracleSelectionMethod) the last eval step of each run; the draw with the best
                   test_out there; report its test_in.
For each (test env, trial) the chosen draw's test accuracy is one number; each env is reported as
mean +/- standard error over trials (DomainBed: np.std(x / sqrt(n)), population std), and the
average over envs as DomainBed's tables do. Ties go to the earlier step and, across draws, to
the first hparams label in sorted order (DomainBed's sort makes its own, unspecified, choice).

    python -m jaxcv.domain_generalization.selection RUNS_DIR...   # every metrics.jsonl below
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import logging
import math
import sys
from pathlib import Path
from typing import Iterable, Optional, Sequence

import numpy as np

from jaxcv import specs
from jaxcv.errors import ConfigError

log = logging.getLogger(__name__)

TRAINING_DOMAIN = 'training_domain'
ORACLE = 'oracle'
METHODS = (TRAINING_DOMAIN, ORACLE)
VAL_KEY = 'val/acc/mean'
TEST_KEY = 'test_in/acc/mean'
ORACLE_KEY = 'test_out/acc/mean'


@dataclasses.dataclass(frozen=True)
class Run:
  """One finished run: its evaluation records (metrics.jsonl lines) and what identifies it."""
  test_env: str
  trial: int
  hparams: str  # A label of the hyperparameter draw; runs sharing it differ only in the trial.
  records: tuple[dict, ...]
  path: str = ''


@dataclasses.dataclass(frozen=True)
class Choice:
  """The selected step of a run: its validation value (what was maximised) and test accuracy."""
  val: float
  test: float
  step: int
  run: Run


@dataclasses.dataclass
class Summary:
  method: str
  envs: dict[str, tuple[float, float, int]]  # test env -> (mean, standard error, trials).
  average: Optional[float]  # Mean over envs of the env means (DomainBed's 'Avg' column).
  trial_average: Optional[tuple[float, float, int]]  # Per-trial mean over envs: mean, SE, trials.
  chosen: dict[tuple[str, int], Choice]  # (test env, trial) -> the selected run and step.


def records_with(records: Iterable[dict], keys: Sequence[str]) -> list[dict]:
  """The records holding every key, one per step (the last written wins: a resumed run may
  evaluate a step again), sorted by step."""
  by_step = {}
  for record in records:
    if all(isinstance(record.get(k), (int, float)) for k in keys):
      by_step[int(record['step'])] = record
  return [by_step[s] for s in sorted(by_step)]


def run_choice(run: Run, method: str = TRAINING_DOMAIN, val_key: str = VAL_KEY,
               test_key: str = TEST_KEY, oracle_key: str = ORACLE_KEY) -> Optional[Choice]:
  """The step `method` picks within `run`, or None when the run has no such records."""
  if method not in METHODS:
    raise ConfigError(f'selection method must be one of {METHODS}, got {method!r}')
  if method == ORACLE:
    records = records_with(run.records, (oracle_key, test_key))
    if not records:
      return None
    last = records[-1]
    return Choice(float(last[oracle_key]), float(last[test_key]), int(last['step']), run)
  records = records_with(run.records, (val_key, test_key))
  if not records:
    return None
  best = max(records, key=lambda r: r[val_key])  # The first maximum: the earliest step.
  return Choice(float(best[val_key]), float(best[test_key]), int(best['step']), run)


def mean_and_error(values: Sequence[float]) -> tuple[float, float]:
  """DomainBed's format_mean: the mean and np.std(values / sqrt(n)) (population std)."""
  values = np.asarray(values, np.float64)
  return float(np.mean(values)), float(np.std(values / math.sqrt(len(values))))


def select(runs: Iterable[Run], method: str = TRAINING_DOMAIN, val_key: str = VAL_KEY,
           test_key: str = TEST_KEY, oracle_key: str = ORACLE_KEY) -> Summary:
  """Selects per (test env, trial) across hyperparameter draws and summarises over trials."""
  best: dict[tuple[str, int], Choice] = {}
  for run in sorted(runs, key=lambda r: (r.test_env, r.trial, r.hparams)):
    choice = run_choice(run, method, val_key, test_key, oracle_key)
    key = (run.test_env, run.trial)
    if choice is not None and (key not in best or choice.val > best[key].val):
      best[key] = choice
  envs = {}
  for env in sorted({env for env, _ in best}):
    tests = [c.test for (e, _), c in sorted(best.items()) if e == env]
    envs[env] = (*mean_and_error(tests), len(tests))
  trials = sorted({trial for _, trial in best})
  per_trial = [np.mean([c.test for (_, t), c in best.items() if t == trial]) for trial in trials]
  return Summary(
      method=method, envs=envs,
      average=float(np.mean([m for m, _, _ in envs.values()])) if envs else None,
      trial_average=(*mean_and_error(per_trial), len(per_trial)) if per_trial else None,
      chosen=best)


# ---------------------------------------------------------------------------------------------
# Reading runs from workdirs
# ---------------------------------------------------------------------------------------------

def _read_jsonl(path: Path) -> list[dict]:
  with open(path) as f:
    return [json.loads(line) for line in f if line.strip()]


def _domainbed_prefix(name: str) -> tuple[str, Optional[specs.Spec], str]:
  """'grayscale:domainbed(test=0):pacs' -> ('grayscale:', Spec('domainbed', ...), 'pacs'); no
  domainbed(...) prefix: (name, None, '')."""
  head, rest = '', name or ''
  while (prefixed := specs.parse_prefixed(rest, 'dataset')) is not None:
    spec, rest = prefixed
    if spec.name == 'domainbed':
      return head, spec, rest
    head += spec.text + ':'
  return name or '', None, ''


def _domainbed_options(name: str) -> dict[str, str]:
  """The options of the name's domainbed(...) prefix, as written."""
  spec = _domainbed_prefix(name)[1]
  return dict(spec.raw) if spec else {}


def _hparams_label(config: dict) -> str:
  """A digest of the config without what differs between trials and test envs: the seed and
  domainbed()'s test= and seed= options."""
  config = json.loads(json.dumps(config))
  config.pop('seed', None)
  data = config.get('data') or {}
  if isinstance(data.get('name'), str):
    head, spec, base = _domainbed_prefix(data['name'])
    if spec is not None:
      options = sorted((k, v) for k, v in spec.raw.items() if k not in ('test', 'seed'))
      data['name'] = f'{head}domainbed({",".join(f"{k}={v}" for k, v in options)}):{base}'
  return hashlib.sha1(json.dumps(config, sort_keys=True).encode()).hexdigest()[:10]


def _test_env_from_metrics(records: list[dict], test_key: str) -> Optional[str]:
  """The one domain name in the test evaluator's `acc/<name>` keys, if there is exactly one."""
  prefix = test_key.rsplit('/', 1)[0] + '/'
  names = {k[len(prefix):] for r in records for k in r if k.startswith(prefix) and k != test_key}
  return names.pop() if len(names) == 1 else None


def read_run(workdir: str | Path, test_env: Optional[str] = None, trial: Optional[int] = None,
             hparams: Optional[str] = None, test_key: str = TEST_KEY) -> Run:
  """A Run from a jaxcv workdir (metrics.jsonl, and config.json for what is not given).

  test_env defaults to the domain the test evaluator names (its `acc/<name>` key), else
  config.data.name's domainbed(test=...); trial to domainbed(seed=...) (0 when absent); hparams
  to a digest of config.json without the seed and those two options.
  """
  workdir = Path(workdir)
  metrics = workdir / 'metrics.jsonl'
  if not metrics.is_file():
    raise ConfigError(f'{workdir} has no metrics.jsonl')
  records = _read_jsonl(metrics)
  config_path = workdir / 'config.json'
  config = json.loads(config_path.read_text()) if config_path.is_file() else {}
  options = _domainbed_options((config.get('data') or {}).get('name', ''))
  test_env = test_env or _test_env_from_metrics(records, test_key) or options.get('test')
  if test_env is None:
    raise ConfigError(f'{workdir}: cannot tell the test environment; pass test_env')
  if trial is None:
    trial = int(options.get('seed', 0))
  if hparams is None:
    hparams = _hparams_label(config) if config else workdir.name
  return Run(test_env=str(test_env), trial=int(trial), hparams=hparams, records=tuple(records),
             path=str(workdir))


def find_runs(roots: Iterable[str | Path], test_key: str = TEST_KEY) -> list[Run]:
  """Every DomainBed run (a folder with metrics.jsonl) at or below the given folders; other
  runs under them (no test environment to tell) are skipped with a warning."""
  folders = sorted({p.parent for root in roots for p in Path(root).rglob('metrics.jsonl')})
  runs = []
  for folder in folders:
    try:
      runs.append(read_run(folder, test_key=test_key))
    except ConfigError as e:
      log.warning('skipping %s, not a DomainBed run: %s', folder, e)
  return runs


def format_summary(summary: Summary) -> str:
  """A DomainBed-style row: each test env's mean +/- SE (percent), then the averages."""
  names = {TRAINING_DOMAIN: 'training-domain validation set',
           ORACLE: 'test-domain validation set (oracle)'}
  lines = [f'model selection: {names[summary.method]}']
  for env, (mean, err, n) in summary.envs.items():
    lines.append(f'  {env:<16} {100 * mean:5.1f} +/- {100 * err:.1f}  ({n} trials)')
  if summary.average is not None:
    mean, err, n = summary.trial_average
    lines.append(f'  {"Avg":<16} {100 * summary.average:5.1f}  (over trials: {100 * mean:.1f} '
                 f'+/- {100 * err:.1f}, {n} trials)')
  return '\n'.join(lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split('\n', 1)[0])
  parser.add_argument('roots', nargs='+', help='folders holding run workdirs')
  parser.add_argument('--val_key', default=VAL_KEY)
  parser.add_argument('--test_key', default=TEST_KEY)
  parser.add_argument('--oracle_key', default=ORACLE_KEY)
  args = parser.parse_args(argv)
  missing = [root for root in args.roots if not Path(root).is_dir()]
  if missing:
    print(f'error: no such folder: {", ".join(missing)}', file=sys.stderr)
    return 2
  runs = find_runs(args.roots, args.test_key)
  print(f'{len(runs)} runs')
  for method in METHODS:
    print(format_summary(select(runs, method, args.val_key, args.test_key, args.oracle_key)))
  return 0


if __name__ == '__main__':
  sys.exit(main())
