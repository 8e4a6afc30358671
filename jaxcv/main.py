"""Command-line entry point: flags -> config -> (jax.distributed) -> train.run(config, workdir).

  python -m jaxcv.main --config configs/quickstart.py[:arg,...] --workdir DIR [--config.key=value ...]
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

_HELP = """\
Train and/or evaluate a jaxcv experiment.

The config file defines get_config(arg) and may take an argument string after a colon, e.g.
  --config configs/quickstart.py:runlocal
'runlocal' shrinks any config to a few steps on a few examples, for debugging.
Override any config value with --config.KEY=VALUE or --config.KEY VALUE (nested keys with
dots), e.g.
  --config.batch_size=256 --config.schedule.lr=0.05 --config.data.data_dir=/data
Unknown keys and values of the wrong type are errors. A workdir that holds checkpoints is
resumed; a run with total_steps=0 only evaluates (use init_checkpoint to pick the weights), e.g.
the OOD evaluation of a trained run (tables and scores under WORKDIR/ood/):
  --config configs/ood/evaluate.py:run=runs/x --config.evals.ood.datasets=mnist,dtd10
Data is read from --config.data.data_dir or the JAXCV_DATA_DIR environment variable.
"""


class ArgumentParser(argparse.ArgumentParser):
  """argparse whose usage mistakes are one `error:` line and exit status 2, like every other
  user mistake in jaxcv's entry points."""

  def error(self, message):
    print(f'error: {message} (see {self.prog} --help)', file=sys.stderr)
    sys.exit(2)


def setup_logging() -> None:
  logging.basicConfig(level=logging.INFO, format='%(asctime)s %(levelname)s %(message)s',
                      datefmt='%H:%M:%S')
  logging.getLogger('absl').setLevel(logging.WARNING)  # orbax's per-save INFO lines.


def parse_args(argv):
  parser = ArgumentParser(prog='python -m jaxcv.main', description=_HELP,
                          formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('--config', required=True, help='path/to/config.py[:arg]')
  parser.add_argument('--workdir', required=True, help='where checkpoints and metrics go')
  parser.add_argument('--distributed', action='store_true',
                      default=os.environ.get('JAXCV_DISTRIBUTED') == '1',
                      help='call jax.distributed.initialize() first (multi-host GPU/TPU); '
                           'also JAXCV_DISTRIBUTED=1')
  parser.add_argument('--cpu_devices', type=int, default=0,
                      help='pretend the CPU has this many devices (testing sharding)')
  parser.add_argument('--coordinator_address', default=None,
                      help='with --distributed where the cluster is not detected: host:port of '
                           'process 0 (with --num_processes and --process_id)')
  parser.add_argument('--num_processes', type=int, default=None)
  parser.add_argument('--process_id', type=int, default=None)
  args, rest = parser.parse_known_args(argv)
  overrides = []
  rest = list(rest)
  while rest:
    item = rest.pop(0)
    if not item.startswith('--config.'):
      parser.error(f'unrecognised argument {item!r} (config values are --config.KEY=VALUE)')
    if '=' not in item:  # The space form, --config.KEY VALUE.
      if not rest or rest[0].startswith('--'):
        parser.error(f'{item} needs a value ({item}=VALUE or {item} VALUE)')
      item = f'{item}={rest.pop(0)}'
    overrides.append(item[len('--config.'):])
  return args, overrides


def main(argv=None) -> int:
  args, overrides = parse_args(sys.argv[1:] if argv is None else argv)
  setup_logging()
  import jax  # pylint: disable=g-import-not-at-top  (device flags must be set first)
  if args.cpu_devices:
    jax.config.update('jax_num_cpu_devices', args.cpu_devices)
  if args.distributed:
    # CPU processes need a collectives library to compute together (no effect on GPU/TPU).
    jax.config.update('jax_cpu_collectives_implementation', 'gloo')
    # Before anything touches the devices.
    jax.distributed.initialize(args.coordinator_address, args.num_processes, args.process_id)
    if jax.process_index() != 0:  # One log and one `error:` line per job, from process 0.
      logging.getLogger().setLevel(logging.WARNING)

  from jaxcv import config as config_lib  # pylint: disable=g-import-not-at-top
  from jaxcv import metrics, train  # pylint: disable=g-import-not-at-top
  from jaxcv.errors import CheckpointSaveError, UserError  # pylint: disable=g-import-not-at-top
  try:
    config = config_lib.load(args.config, overrides)
    summary = train.run(config, args.workdir)
  except UserError as e:
    if jax.process_index() == 0:
      print(f'error: {e}', file=sys.stderr)
    if isinstance(e, CheckpointSaveError):
      # A failed background save can leave the checkpoint library's threads waiting for a
      # signal that never comes, and the interpreter waits for them at exit: leave now.
      logging.shutdown()
      sys.stdout.flush()
      sys.stderr.flush()
      os._exit(2)  # pylint: disable=protected-access
    return 2
  if jax.process_index() == 0:
    print(metrics.format_summary(summary))
  return 0


if __name__ == '__main__':
  sys.exit(main())
