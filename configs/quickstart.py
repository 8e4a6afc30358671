"""Quickstart: a small ResNet on the CIFAR-10 sample shipped inside the package.

Needs no download and no data directory: 10,000 training and 2,000 test images taken from
CIFAR-10 (see jaxcv/data/sample/PROVENANCE.md). A few minutes on 2 CPU cores.

  python -m jaxcv.main --config configs/quickstart.py --workdir /tmp/quickstart
  python -m jaxcv.main --config configs/quickstart.py:runlocal --workdir /tmp/qs_tiny
"""

from jaxcv import config as config_lib
from jaxcv.data.statistics import input_normalization


def get_config(arg=None):
  arg = config_lib.parse_arg(arg, runlocal=False, epochs=15.0, width=16)
  config = config_lib.base_config()
  config.data.name = 'cifar10_sample'
  config.data.augment = 'crop(padding=4)|flip'
  config.model.name = 'resnet_tiny'
  config.model.kwargs.width = arg.width
  config.model.kwargs.input_mean, config.model.kwargs.input_std = (
      input_normalization(config.data.name))
  config.batch_size = 128
  config.num_epochs = arg.epochs
  config.optimizer.name = 'sgd'
  config.optimizer.weight_decay = 5e-4
  config.schedule.name = 'onecycle'
  config.schedule.lr = 0.2
  config.label_smoothing = 0.1
  config.evals.test = dict(type='classification', split='test', batch_size=500, max_examples=0)
  config.eval_every_steps = 400
  config.log_every_steps = 20
  config.checkpoint_every_steps = 400
  if arg.runlocal:
    config_lib.shrink_for_local_run(config)
  return config
