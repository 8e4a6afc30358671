"""Ablation: AFD without the disentangler losses (alpha = beta = 0): adversarial CE plus the
alignment to the natural teacher only."""

import importlib.util
import os

_spec = importlib.util.spec_from_file_location(
    "_afd_common", os.path.join(os.path.dirname(os.path.abspath(__file__)), "common.py"))
common = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(common)

afd = common.load_sibling('afd.py')


def get_config(arg=None):
  config = afd.get_config(arg)
  config.afd.alpha = 0.0
  config.afd.beta = 0.0
  return config
