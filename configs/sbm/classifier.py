"""The digit classifier of one PolyMNIST modality, for SBM's coherence and FID-proxy metrics
(the classification task and small_cnn).

  python -m jaxcv.main --config configs/sbm/classifier.py:preset=cpu,modality=0 --workdir runs/clf_m0
"""

from jaxcv import config as config_lib

from . import common


def get_config(arg=None):
  arg = config_lib.parse_arg(arg, preset='cpu', modality=0, modalities=5, seed=0, data_seed=0)
  p = common.preset(arg.preset)
  config = common.base(p, p['clf_steps'], arg.seed, lr=2e-3)
  config.data.name = common.dataset(p, arg.modalities, arg.modality, arg.data_seed)
  config.model.name = 'small_cnn'
  config.model.kwargs.width = p['clf_width']
  config.model.kwargs.input_mean, config.model.kwargs.input_std = (0.5,) * 3, (0.25,) * 3
  config.evals.test = dict(type='classification', split='test', batch_size=500,
                           max_examples=p['eval_examples'])
  return config
