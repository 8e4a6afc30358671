"""vAFT: vanilla adversarial fine-tuning (PGD-AT loss) of the natural model, with AFD's protocol
(same start, attack, optimizer, schedule and EMA), the baseline AFD is compared with.

  python -m jaxcv.main --config configs/afd/vaft.py:init=runs/afd_natural --workdir runs/afd_vaft
"""

import importlib.util
import os

_spec = importlib.util.spec_from_file_location(
    "_afd_common", os.path.join(os.path.dirname(os.path.abspath(__file__)), "common.py"))
common = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(common)


def get_config(arg=None):
  config, _ = common.finetune(arg, 'pgd_at')
  return config
