"""Ablation: AFD without the alignment to the natural teacher (gamma = 0)."""

from . import afd


def get_config(arg=None):
  config = afd.get_config(arg)
  config.afd.gamma = 0.0
  return config
