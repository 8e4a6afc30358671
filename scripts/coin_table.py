"""Collects a COIN sweep's runs into the paper's table: coin_table.md and coin_table.png.

  python scripts/coin_table.py runs/coin [--out results/coin]

Reads runs/coin/<row>/{summary.json,config.json}, rows.json (statuses) and theta.json written by
`python -m jaxcv.unlearnable.sweep` (see configs/coin/resnet18.py).
"""

import argparse
import sys

from jaxcv.unlearnable import report


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('root', help='the sweep workdir (one sub-folder per row)')
  parser.add_argument('--out', default='', help='where to write the table (default: root)')
  args = parser.parse_args(argv)
  print(report.write_table(args.root, args.out or None))
  return 0


if __name__ == '__main__':
  sys.exit(main())
