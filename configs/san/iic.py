"""The IIC baseline (task iic_seg): the SAN pixel encoder + a 1x1 softmax head trained with IIC's
segmentation loss between a jittered view and a jittered, flipped and shifted view.

  python -m jaxcv.main --config configs/san/iic.py:preset=cpu --workdir runs/iic
Arguments: preset, data, seed, steps, overcluster (an auxiliary head of that many clusters, its
loss added; 0 = none), lamb (IIC's marginal weight; 1.0 or 1.5 in its commands).
"""

from . import common


def get_config(arg=None):
  config, _, arg, _ = common.base(dict(overcluster=0, lamb=1.0), arg)
  config.task = 'iic_seg'
  config.model.name = 'cluster_net'  # Built by the task (jaxcv/san/models.py); the name is for logs.
  # half_t=1 cell at stride 4 is about IIC's +-5 px neighbourhood (Potsdam-6) at this resolution.
  config.iic = dict(overcluster=arg.overcluster, half_t=1, lamb=arg.lamb)
  return config
