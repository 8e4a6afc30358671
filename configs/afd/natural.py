"""AFD step 1: natural pre-training of the CIFAR-10 ResNet-18 (the AFT start and AFD's teacher).

The standard CIFAR-10 recipe of configs/cifar10/resnet18.py (SGD-Nesterov, one-cycle, label
smoothing 0.1, bf16, batch 512), plus the feature-gap metric at the end (epoch 0 of the plot).

  python -m jaxcv.main --config configs/afd/natural.py:epochs=40 --workdir runs/afd_natural
"""

from . import common


def get_config(arg=None):
  config, arg = common.base(arg, epochs=40.0, batch=512, lr=0.4, robust_evals=True)
  config.batch_size = arg.batch
  config.num_epochs = arg.epochs
  config.optimizer.name = 'sgd'
  config.optimizer.nesterov = True
  config.optimizer.weight_decay = 5e-4
  config.schedule.name = 'onecycle'
  config.schedule.lr = arg.lr
  config.label_smoothing = 0.1
  config.evals.test = dict(type='classification', split='test', batch_size=1000)
  if arg.robust_evals:  # PGD accuracy and the feature gap of the natural model (epoch 0).
    common.add_pgd_eval(config, arg.eval_examples)
    common.add_feature_gap_eval(config, arg.eval_examples)
  per_epoch = common.steps_per_epoch(arg)
  config.eval_every_steps = 0
  config.log_every_steps = per_epoch
  config.checkpoint_every_steps = 10 * per_epoch
  if arg.runlocal:
    common.shrink_for_local_run(config, arg.eval_examples)
  return config
