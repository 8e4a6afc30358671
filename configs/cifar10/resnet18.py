"""CIFAR-10, ResNet-18 (3x3 stem), SGD-Nesterov with a one-cycle schedule, bf16 compute.

The standard classifier later papers start from (AFD's natural model, COIN's clean row, the OOD
backbones). Needs CIFAR-10 under the data directory (any of the forms jaxcv.data reads).

  python -m jaxcv.main --config configs/cifar10/resnet18.py --workdir runs/cifar10_r18
  python -m jaxcv.main --config configs/cifar10/resnet18.py:epochs=200,batch=128 --workdir ...
"""

from jaxcv import config as config_lib
from jaxcv.data.statistics import input_normalization


def get_config(arg=None):
  arg = config_lib.parse_arg(arg, runlocal=False, epochs=30.0, batch=512, lr=0.4,
                             model='resnet18', dtype='bfloat16', dataset='cifar10')
  config = config_lib.base_config()
  config.data.name = arg.dataset.replace(';', ',')  # parse_arg splits on ','.
  config.data.augment = 'crop(padding=4)|flip'
  config.model.name = arg.model
  config.model.kwargs.input_mean, config.model.kwargs.input_std = (
      input_normalization(config.data.name, default='cifar10'))
  config.dtype = arg.dtype
  config.batch_size = arg.batch
  config.num_epochs = arg.epochs
  config.optimizer.name = 'sgd'
  config.optimizer.nesterov = True
  config.optimizer.weight_decay = 5e-4
  config.schedule.name = 'onecycle'
  config.schedule.lr = arg.lr
  config.label_smoothing = 0.1
  config.evals.test = dict(type='classification', split='test', batch_size=1000,
                           max_examples=0)
  steps_per_epoch = 50_000 // arg.batch
  config.eval_every_steps = 5 * steps_per_epoch
  config.log_every_steps = steps_per_epoch
  config.checkpoint_every_steps = 10 * steps_per_epoch
  if arg.runlocal:
    config_lib.shrink_for_local_run(config)
  return config
