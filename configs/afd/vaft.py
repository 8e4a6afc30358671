"""vAFT: vanilla adversarial fine-tuning (PGD-AT loss) of the natural model, with AFD's protocol
(same start, attack, optimizer, schedule and EMA), the baseline AFD is compared with.

  python -m jaxcv.main --config configs/afd/vaft.py:init=runs/afd_natural --workdir runs/afd_vaft
"""

from . import common


def get_config(arg=None):
  config, _ = common.finetune(arg, 'pgd_at')
  return config
