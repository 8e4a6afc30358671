"""Shared settings of the AFD experiments (method and deviations: docs/afd.md).

Not a config itself: the config files of this package import it (`from . import common`).
"""

from jaxcv import config as config_lib
from jaxcv.data.statistics import input_normalization
from jaxcv.errors import ConfigError
from jaxcv.tasks.adversarial import add_adversarial_config

TRAIN_EXAMPLES = {'cifar10': 50_000, 'cifar100': 50_000, 'cifar10_sample': 10_000}

# The evaluation of the paper's code (PGD-20 at step 0.003) next to the common 2/255, and
# jaxcv's AutoAttack proxy (APGD-CE + APGD-T; FAB and Square are not implemented).
PGD_ATTACKS = (('pgd20_s0.003', 'pgd(steps=20, step_size=0.003)'),
               ('pgd20_s2', 'pgd(steps=20, step_size=0.00784313725490196)'))
AA_PROXY_ATTACKS = (('apgd_ce', 'apgd_ce(steps=100)'),
                    ('apgd_t', 'apgd_t(steps=100, num_targets=9)'))


def base(arg, **defaults):
  """CIFAR ResNet-18 (kuangliu 3x3 stem, padding 1: not the official code's padding-0 stem)."""
  arg = config_lib.parse_arg(arg, **{
      'runlocal': False, 'dataset': 'cifar10', 'model': 'resnet18', 'dtype': 'bfloat16',
      'seed': 0, 'eval_examples': 1000, 'train_examples': 0, **defaults})
  config = config_lib.base_config()
  config.seed = arg.seed
  config.data.name = arg.dataset.replace(';', ',')  # parse_arg splits on ','.
  if arg.train_examples:  # The first n training images: a CPU-sized reproduction.
    config.data.train_examples = arg.train_examples
  config.data.augment = 'crop(padding=4)|flip'
  config.model.name = arg.model
  config.model.kwargs.input_mean, config.model.kwargs.input_std = (
      input_normalization(config.data.name, default='cifar10'))
  config.dtype = arg.dtype
  config.progress_bar = True
  return config, arg


def steps_per_epoch(arg) -> int:
  examples = arg.train_examples or TRAIN_EXAMPLES.get(arg.dataset, 50_000)
  return max(examples // arg.batch, 1)


def add_pgd_eval(config, examples: int) -> None:
  config.evals.pgd = dict(type='robustness', split='test', batch_size=min(500, examples),
                          max_examples=examples,
                          eps=8 / 255, attacks=PGD_ATTACKS)


def add_feature_gap_eval(config, examples: int) -> None:
  """PGD-10, eps 8/255, step 2/255 on a fixed test subset; logged at every evaluation."""
  config.evals.feature_gap = dict(type='feature_gap', split='test', batch_size=min(500, examples),
                                  max_examples=min(examples, 1000), eps=8 / 255,
                                  step_size=2 / 255, steps=10)


def shrink_for_local_run(config, eval_examples: int) -> None:
  """`runlocal`: the loop's shrinking; the attacks' evaluation subsets stay as small as asked."""
  config_lib.shrink_for_local_run(config)
  for name in config.evals:
    if config.evals[name].get('max_examples'):
      config.evals[name].max_examples = min(config.evals[name].max_examples, eval_examples)
      # A batch larger than the subset would be padded (and attacked) in full.
      config.evals[name].batch_size = min(config.evals[name].batch_size,
                                          config.evals[name].max_examples)


def finetune(arg, task: str, **defaults):
  """The adversarial fine-tuning protocol shared by vAFT and AFD (official AFD defaults).

  SGD momentum 0.9 (no Nesterov), weight decay 5e-4, lr 0.025 at batch 128 (scaled linearly
  with the batch), PGD-10 eps 8/255 step 0.007 with a random start and BatchNorm in eval mode,
  EMA min(0.999, (n+1)/(n+10)), 20 epochs. LR as the code: 0.025 for epochs 1-10, x0.8 at 11,
  then halved at 13, 15, 17, 19 (`schedule.step_factors`), compressed proportionally for other
  epoch counts.
  """
  config, arg = base(arg, **{'epochs': 20.0, 'batch': 128, 'lr': 0.025, 'init': '',
                             'pgd_steps': 10, 'evals_per_epoch': 1, **defaults})
  if not arg.init and not arg.runlocal:
    raise ConfigError(f'{task} fine-tunes a natural model: pass init=<workdir of '
                      'configs/afd/natural.py> (e.g. configs/afd/vaft.py:init=runs/afd_natural)')
  config.task = task
  config.init_checkpoint = arg.init
  config.batch_size = arg.batch
  config.num_epochs = arg.epochs
  config.optimizer.name = 'sgd'
  config.optimizer.momentum = 0.9
  config.optimizer.nesterov = False
  config.optimizer.weight_decay = 5e-4
  config.schedule.name = 'step'
  config.schedule.lr = arg.lr * arg.batch / 128
  # The official schedule over 20 epochs: x0.8 at epoch 11, then halved at 13, 15, 17 and 19.
  config.schedule.step_boundaries = (0.5, 0.6, 0.7, 0.8, 0.9)
  config.schedule.step_factors = (0.8, 0.5, 0.5, 0.5, 0.5)
  config.ema_decay = 0.999
  config.eval_with_ema = True
  add_adversarial_config(config, eps=8 / 255, step_size=0.007, steps=arg.pgd_steps,
                         ema_warmup=True)
  config.evals.test = dict(type='classification', split='test', batch_size=1000)
  add_pgd_eval(config, arg.eval_examples)
  add_feature_gap_eval(config, arg.eval_examples)
  per_epoch = steps_per_epoch(arg)
  config.eval_every_steps = max(per_epoch // max(arg.evals_per_epoch, 1), 1)
  config.log_every_steps = max(per_epoch // 4, 1)
  config.checkpoint_every_steps = config.eval_every_steps if arg.epochs <= 5 else 5 * per_epoch
  if arg.runlocal:
    shrink_for_local_run(config, arg.eval_examples)
    config.eval_every_steps = 5
  return config, arg
