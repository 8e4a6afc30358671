"""The BROAD table's classifiers: the ID model (one per seed) and the second, independently
trained model the transfer attacks are crafted on. configs/cifar10/resnet18.py per preset:

  runlocal  a small CNN, a few steps on the shipped CIFAR-10 sample (seconds; the tests)
  cpu       a width-8 ResNet (resnet_tiny: 4 stages of one basic block, 0.08M parameters), float32,
            `epochs` (3) on a seeded 20,000-image subset of CIFAR-10 train (`train_examples`:
            what a shared 2-core machine trains three times in minutes)
  gpu       ResNet-18, bf16, `epochs` (30) on CIFAR-10

  python -m jaxcv.main --config configs/broad/classifier.py:preset=cpu,seed=1 --workdir runs/id1
"""

from jaxcv import config as config_lib
from jaxcv.errors import ConfigError

from ..cifar10 import resnet18

TRAIN_EXAMPLES = {'runlocal': 0, 'cpu': 20_000, 'gpu': 0}  # 0: every training image.
PRESETS = {
    'runlocal': 'runlocal,model=small_cnn,dtype=float32,dataset=cifar10_sample',
    'cpu': 'model=resnet_tiny,dtype=float32,epochs=3,batch=256,lr=0.2',
    'gpu': 'epochs=30',
}


def get_config(arg=None):
  arg = config_lib.parse_arg(arg, preset='cpu', seed=0, epochs=0.0, width=8,
                             train_examples=-1)
  if arg.preset not in PRESETS:
    raise ConfigError(f'preset must be one of {", ".join(PRESETS)}, got {arg.preset!r}')
  config = resnet18.get_config(PRESETS[arg.preset] + (f',epochs={arg.epochs}' if arg.epochs
                                                      else ''))
  if config.model.name == 'resnet_tiny':
    config.model.kwargs.width = arg.width
  train_examples = TRAIN_EXAMPLES[arg.preset] if arg.train_examples < 0 else arg.train_examples
  if train_examples:
    config.data.train_examples = train_examples
  config.seed = arg.seed
  return config
