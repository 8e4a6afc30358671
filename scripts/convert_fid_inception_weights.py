"""Converts pytorch-fid's Inception weights (.pth) to an .npz that jaxcv reads without torch.

    python scripts/convert_fid_inception_weights.py \
        ~/.cache/torch/hub/checkpoints/pt_inception-2015-12-05-6726825d.pth \
        $JAXCV_DATA_DIR/pt_inception-2015-12-05-6726825d.npz

The .npz holds the same state dict (same keys, PyTorch layouts). The file is checked against
the Flax network (every key and shape) before it is written. The .pth itself comes from
https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/pt_inception-2015-12-05-6726825d.pth
(pytorch-fid downloads it to torch hub's cache on first use).
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

from jaxcv.errors import UserError
from jaxcv.models import inception


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split('\n', 1)[0])
  parser.add_argument('pth', help=f'path to {inception.FID_WEIGHTS_FILE}')
  parser.add_argument('npz', help='output .npz path')
  args = parser.parse_args(argv)
  try:
    state = inception.read_state_dict(args.pth)
    inception.variables_from_state_dict(state)  # Raises on a wrong file.
  except (UserError, OSError) as e:
    print(f'error: {e}', file=sys.stderr)
    return 1
  np.savez(args.npz, **state)
  print(f'wrote {args.npz}: {len(state)} arrays, '
        f'{sum(v.size for v in state.values()) / 1e6:.2f}M values')
  return 0


if __name__ == '__main__':
  sys.exit(main())
