"""CIFAR-10 to 94% in seconds: airbench94 (Jordan, arXiv 2404.00498) as a jaxcv config.

The tricks, where they live, and what each buys is in configs/fast_cifar10/README.md. Arguments
switch single tricks off for ablations (altflip, lookahead, tta, bias_scaler, whiten_bias_epochs).

  python -m jaxcv.main --config configs/fast_cifar10/airbench94.py --workdir runs/airbench94
  python -m benchmarks.fast_cifar10        # timed against the PyTorch airbench94, same GPU
"""

import math

import ml_collections

import jaxcv.fast  # noqa: F401 - registers the 'airbench' task and the 'translate' op.
from jaxcv import config as config_lib
from jaxcv.data.statistics import input_normalization

TRAIN_EXAMPLES = 50_000


def get_config(arg=None):
  arg = config_lib.parse_arg(arg, runlocal=False, epochs=9.9, batch=1024, altflip=True,
                             lookahead=True, tta='flip_translate', bias_scaler=64.0,
                             whiten_bias_epochs=3, dtype='bfloat16', train_examples=0)
  config = config_lib.base_config()
  config.task = 'airbench'
  config.data.name = 'cifar10'
  config.data.augment = 'translate(pad=2)' + ('' if arg.altflip else '|flip')
  if arg.train_examples:
    config.data.train_examples = arg.train_examples
  config.model.name = 'airbench94'
  config.model.kwargs.input_mean, config.model.kwargs.input_std = (
      input_normalization(config.data.name))
  config.dtype = arg.dtype
  config.batch_size = arg.batch
  steps_per_epoch = (arg.train_examples or TRAIN_EXAMPLES) // arg.batch
  config.total_steps = math.ceil(steps_per_epoch * arg.epochs)  # airbench rounds up.

  # airbench sums the loss over the batch and sets PyTorch SGD's lr = 11.5 / kilostep_scale with
  # kilostep_scale = 1024 * (1 + 1 / (1 - momentum)) and weight decay 0.0153 * batch /
  # kilostep_scale / lr. With jaxcv's mean loss the same updates are lr * batch and a coupled
  # decay of 0.0153 / 11.5 (independent of the batch size).
  momentum = 0.85
  config.optimizer.name = 'sgd'
  config.optimizer.momentum = momentum
  config.optimizer.nesterov = True
  config.optimizer.weight_decay = 0.0153 / 11.5
  config.optimizer.decay_norm_and_bias = True
  # BatchNorm biases: lr x bias_scaler, decay / bias_scaler (the same decay per step).
  config.optimizer.param_groups = ((r'norm\d/bias$', arg.bias_scaler, 1 / arg.bias_scaler),)
  # The whitening layer's bias trains for the first epochs only.
  config.optimizer.freeze_after = (('whiten_bias', arg.whiten_bias_epochs * steps_per_epoch),)
  config.schedule.name = 'triangle'
  config.schedule.lr = 11.5 / (1024 * (1 + 1 / (1 - momentum))) * arg.batch
  config.schedule.start_factor = 0.2
  config.schedule.peak_fraction = 0.23
  config.schedule.end_factor = 0.07
  config.label_smoothing = 0.2

  config.fast = ml_collections.ConfigDict({
      'altflip': arg.altflip,
      'lookahead_every': 5 if arg.lookahead else 0,
      'lookahead_decay': 0.95**5,
  })
  config.evals.test = dict(type='classification', split='test', batch_size=2000,
                           max_examples=0, tta=arg.tta)
  # 4 steps per dispatch (lax.scan): 4 divides both the 48-step epoch and the 476-step run, so
  # one program serves every call, and per-call overhead is a quarter of per-step dispatch.
  config.steps_per_call = 4
  config.log_every_steps = steps_per_epoch
  config.eval_every_steps = 0
  config.checkpoint_every_steps = 0
  if arg.runlocal:
    config_lib.shrink_for_local_run(config)
    config.steps_per_call = 2
    config.evals.test.batch_size = 128
  return config
