"""AFD: adversarial fine-tuning with feature disentanglement (jaxcv/tasks/afd.py), official
CIFAR-10 weights alpha=0.05, beta=0.25, gamma=25, the 'clean' update rule by default.

  python -m jaxcv.main --config configs/afd/afd.py:init=runs/afd_natural --workdir runs/afd
  python -m jaxcv.main --config configs/afd/afd.py:init=runs/afd_natural,mode=code_faithful ...
"""

from jaxcv.tasks.afd import add_afd_config

from . import common


def get_config(arg=None):
  config, arg = common.finetune(arg, 'afd', alpha=0.05, beta=0.25, gamma=25.0, mode='clean',
                                dis_grad_to_classifier=False)
  add_afd_config(config, alpha=arg.alpha, beta=arg.beta, gamma=arg.gamma, mode=arg.mode,
                 dis_grad_to_classifier=arg.dis_grad_to_classifier)
  return config
