"""ERM under DomainBed's protocol (Gulrajani & Lopez-Paz 2021): the baseline ERM++ builds on.

One run = one held-out test environment, one trial (the in/out split seed), one hyperparameter
setting. Training sees the `in` parts of the source environments, one minibatch per environment
per step (`data.balance_domains`); the evaluators write what DomainBed's model selection reads
(val = source `out` parts, test_in, test_out; jaxcv/domain_generalization/). Defaults are
DomainBed's: Adam, no weight decay, 5001 steps, lr 1e-3 and 64 per environment with its MNIST CNN
for the MNIST datasets (evaluated every 100 steps), lr 5e-5 and 32 per environment otherwise
(every 300 steps). DomainBed's other datasets start from an ImageNet ResNet-50, which jaxcv does
not ship: `model=resnet50_imagenet` trains it from scratch unless `init_checkpoint` is set.

  python -m jaxcv.main --config configs/domainbed/erm.py:dataset=rotated_mnist,test=75 \\
      --workdir runs/dg/rmnist_erm_test75_trial0
  python -m jaxcv.main --config configs/domainbed/erm.py:dataset=pacs,test=sketch,trial=1 ...
  python -m jaxcv.domain_generalization.selection runs/dg      # the DomainBed table
"""

from jaxcv import config as config_lib
from jaxcv.domain_generalization import splits
from jaxcv.errors import ConfigError

MNIST_DATASETS = ('rotated_mnist', 'colored_mnist')
NUM_ENVS = {'rotated_mnist': 6, 'colored_mnist': 3, 'pacs': 4}


def get_config(arg=None):
  arg = config_lib.parse_arg(arg, dataset='rotated_mnist', test='75', trial=0, holdout=0.2,
                             steps=5001, lr=0.0, per_domain=0, envs=0, model='', image_size=0,
                             dtype='float32', runlocal=False)
  mnist = arg.dataset in MNIST_DATASETS
  num_envs = arg.envs or NUM_ENVS.get(arg.dataset)
  if not num_envs:
    raise ConfigError(f'configs/domainbed/erm.py: say how many environments {arg.dataset!r} '
                      'has (envs=N), for the per-domain batch')
  config = config_lib.base_config()
  config.data.name = (f'domainbed(test={arg.test},holdout={arg.holdout},seed={arg.trial}):'
                      f'{arg.dataset}')
  config.data.balance_domains = True
  config.data.augment = ''  # DomainBed's MNIST datasets have none; see ERM++ for the others.
  if arg.image_size:
    config.data.image_size = arg.image_size
  config.model.name = arg.model or ('mnist_cnn' if mnist else 'resnet50_imagenet')
  config.dtype = arg.dtype
  per_domain = arg.per_domain or (64 if mnist else 32)
  config.batch_size = per_domain * (num_envs - 1)  # One minibatch per source environment.
  config.total_steps = arg.steps
  config.optimizer.name = 'adam'
  config.optimizer.weight_decay = 0.0
  config.schedule.name = 'constant'
  config.schedule.lr = arg.lr or (1e-3 if mnist else 5e-5)
  config.schedule.warmup_steps = 0
  config.evals = splits.evals_config(batch_size=512)
  config.eval_every_steps = 100 if mnist else 300
  config.log_every_steps = config.eval_every_steps
  config.checkpoint_every_steps = 1000
  if arg.runlocal:
    config_lib.shrink_for_local_run(config)
    config.batch_size = 8 * (num_envs - 1)  # 8 per domain: divisible by 8 (fake) devices.
  return config
