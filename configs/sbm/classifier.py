"""The digit classifier of SBM's coherence and FID-proxy metrics (classification task,
polymnist_cnn: the official shared classifier's 3 strided convs + MLP).

  python -m jaxcv.main --config configs/sbm/classifier.py:preset=cpu --workdir runs/clf
modality=-1 (default): one classifier shared by all modalities, as the official SBM code,
trained on every modality's images; modality=k: modality k only (MoPoE's per-modality ones).
"""

from jaxcv import config as config_lib

from . import common


def get_config(arg=None):
  arg = config_lib.parse_arg(arg, preset='cpu', modality=-1, modalities=5, seed=0, data_seed=0)
  p = common.preset(arg.preset)
  config = common.base(p, p['clf_steps'], arg.seed, lr=2e-3)
  stack = 'examples' if arg.modality < 0 else 'channels'
  config.data.name = common.dataset(p, arg.modalities, arg.modality, arg.data_seed, stack)
  config.model.name = 'polymnist_cnn'
  config.model.kwargs.width = p['clf_width']
  config.model.kwargs.input_mean, config.model.kwargs.input_std = (0.5,) * 3, (0.25,) * 3
  config.evals.test = dict(type='classification', split='test', batch_size=500,
                           max_examples=p['eval_examples'])
  return config
