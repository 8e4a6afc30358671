"""Ablation: AFD without the disentangler losses (alpha = beta = 0): adversarial CE plus the
alignment to the natural teacher only."""

from . import afd


def get_config(arg=None):
  config = afd.get_config(arg)
  config.afd.alpha = 0.0
  config.afd.beta = 0.0
  return config
