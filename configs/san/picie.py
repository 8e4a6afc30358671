"""The PiCIE-style baseline (task picie): the SAN pixel encoder, online mini-batch k-means
centroids, and PiCIE's within-view + cross-view cluster cross-entropies over two views.

  python -m jaxcv.main --config configs/san/picie.py:preset=cpu --workdir runs/picie
Arguments: preset, data, seed, steps.
"""

from . import common


def get_config(arg=None):
  config, _, _, _ = common.base({}, arg)
  config.task = 'picie'
  config.model.name = 'cluster_net'  # Built by the task (jaxcv/san/models.py); the name is for logs.
  config.picie = dict(temperature=0.1, within=1.0, cross=1.0, count_decay=0.99)
  return config
