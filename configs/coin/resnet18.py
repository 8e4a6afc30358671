"""COIN (arXiv 2311.18403): CIFAR ResNet-18 trained on clean, CUDA-poisoned, VUDA/HUDA-poisoned
data, undefended or under a defense. One family; the setting picks the row of the paper's table.

  python -m jaxcv.main --config configs/coin/resnet18.py:setting=cuda_coin --workdir runs/coin/c
  python -m jaxcv.main --config configs/coin/resnet18.py:setting=cuda_coin,alpha=1.6,epochs=40 ...
  python -m jaxcv.main --config configs/coin/resnet18.py:setting=cuda_jpeg,protocol=short ...
  python -m jaxcv.sweep --table configs/coin/table.py:gpu --workdir runs/coin   # the table

Protocols (applied to every row alike):
  paper: COIN's official training: 80 epochs, SGD lr 0.1 momentum 0.9, no weight decay, constant
         lr, batch 128, float32, no input normalisation.
  short: a budget schedule: 8 epochs, batch 512, SGD-Nesterov with a one-cycle lr (peak 0.4),
         weight decay 5e-4, bf16 compute. Compare rows with each other, not with the paper.
`epochs` / `batch` override the protocol's when > 0, `dtype` when set (float32 on a CPU, where
bf16 is emulated and slow); `train_examples` > 0 trains on the first n (poisoned) images;
`poison_size` is the poison's kernel length (3); `flip=False` trains with random crops only.
The poisoned data is generated on first use
and cached (data.name 'cuda:cifar10' etc., jaxcv/unlearnable/datasets.py); the test split is clean.
`dataset` is the base dataset; parse_arg splits on ',', so write ';' for a comma inside it
(e.g. dataset=synthetic:n=512;size=8;classes=4).
"""

from jaxcv import config as config_lib
from jaxcv.errors import ConfigError
from jaxcv.tasks import adversarial
from jaxcv.unlearnable.coin import SEVERITY_ALPHA

CROP = 'crop(padding=4)'
CROP_FLIP = f'{CROP}|flip'

# setting -> (poison kind or None for clean data, defense). Defenses: 'coin', 'jpeg',
# 'grayscale', 'cutout', 'mixup', 'cutmix', 'pgd_at', or None.
SETTINGS = {
    'clean': (None, None),
    'clean_coin': (None, 'coin'),
    'cuda': ('cuda', None),
    'cuda_coin': ('cuda', 'coin'),
    'cuda_jpeg': ('cuda', 'jpeg'),
    'cuda_grayscale': ('cuda', 'grayscale'),
    'cuda_cutout': ('cuda', 'cutout'),
    'cuda_mixup': ('cuda', 'mixup'),
    'cuda_cutmix': ('cuda', 'cutmix'),
    'cuda_pgd_at': ('cuda', 'pgd_at'),
    'vuda': ('vuda', None),
    'vuda_coin': ('vuda', 'coin'),
    'huda': ('huda', None),
    'huda_coin': ('huda', 'coin'),
}

ALPHA_SWEEP = SEVERITY_ALPHA  # The official code's severities 1..7.

# Test accuracy (%) reported for CIFAR-10, for the table's reference column. [R]: relayed paper
# numbers, averaged over 4 architectures; [3P]: ResNet-18, Kim & Sandoval-Segura 2024.
REFERENCE = {
    'clean': '94.34 [3P]',
    'cuda': '24.92 [R] / 23.25 [3P]',
    'cuda_coin': '72.41 [R]',
    'cuda_pgd_at': '47.04 [R] / 44.40 [3P]',
    'cuda_jpeg': '< 42 [R]',
    'cuda_grayscale': '< 42 [R]',
    'cuda_cutout': '< 42 [R]',
    'cuda_mixup': '< 42 [R]',
    'cuda_cutmix': '< 42 [R]',
    'vuda': '~41 [R]',
    'vuda_coin': '72.44 [R]',
    'huda': '~40 [R]',
    'huda_coin': '73.05 [R]',
}

PROTOCOLS = {
    'paper': dict(epochs=80.0, batch=128, optimizer='sgd', nesterov=False, schedule='constant',
                  lr=0.1, weight_decay=0.0, dtype='float32'),
    'short': dict(epochs=8.0, batch=512, optimizer='sgd', nesterov=True, schedule='onecycle',
                  lr=0.4, weight_decay=5e-4, dtype='bfloat16'),
}


def get_config(arg=None):
  arg = config_lib.parse_arg(
      arg, setting='cuda_coin', protocol='paper', epochs=0.0, batch=0, alpha=2.0,
      wrap='legacy', pb=0.3, poison_seed=0, jpeg_quality=10, cutout_size=16, mix_alpha=1.0,
      pgd_steps=10, pgd_step_size=2 / 255, pgd_eps=8 / 255, dataset='cifar10',
      model='resnet18', dtype='', train_examples=0, poison_size=3, flip=True, runlocal=False)
  if arg.setting not in SETTINGS:
    raise ConfigError(f'unknown setting {arg.setting!r}; known: {", ".join(SETTINGS)}')
  if arg.protocol not in PROTOCOLS:
    raise ConfigError(f'unknown protocol {arg.protocol!r}; known: {", ".join(PROTOCOLS)}')
  protocol = PROTOCOLS[arg.protocol]
  poison, defense = SETTINGS[arg.setting]
  base = arg.dataset.replace(';', ',')

  config = config_lib.base_config()
  # ---- data: the (poisoned) training set and the defense's place in the augmentation.
  data_name = base
  if poison:
    size = f',size={arg.poison_size}' if arg.poison_size != 3 else ''  # 3: the cache key as before.
    data_name = f'{poison}(pb={arg.pb},seed={arg.poison_seed}{size}):{base}'
  if defense == 'jpeg':  # Dataset-level, with Pillow: JAX has no JPEG codec.
    data_name = f'jpeg(quality={arg.jpeg_quality}):{data_name}'
  if defense == 'grayscale':  # Dataset-level too, so the training program is the plain one.
    data_name = f'grayscale:{data_name}'
  config.data.name = data_name
  if arg.train_examples:  # The first n (poisoned) training images: a CPU-sized reproduction.
    config.data.train_examples = arg.train_examples
  # flip=False: crop only (the HUDA study: a horizontal flip mirrors a horizontal kernel).
  augment = CROP_FLIP if arg.flip else CROP
  if defense == 'coin':  # After crop and flip, as the official pipeline.
    augment += f'|coin(alpha={arg.alpha},wrap={arg.wrap!r})'
  elif defense == 'cutout':
    augment += f'|cutout(size={arg.cutout_size})'
  config.data.augment = augment
  config.data.mixing = f'{defense}(alpha={arg.mix_alpha})' if defense in ('mixup', 'cutmix') else ''
  if defense == 'pgd_at':
    _add_adversarial_training(config, arg)

  # ---- model and optimisation: the protocol, identical for every row.
  config.model.name = arg.model
  config.dtype = arg.dtype or protocol['dtype']
  config.batch_size = arg.batch or protocol['batch']
  config.num_epochs = arg.epochs or protocol['epochs']
  config.optimizer.name = protocol['optimizer']
  config.optimizer.momentum = 0.9
  config.optimizer.nesterov = protocol['nesterov']
  config.optimizer.weight_decay = protocol['weight_decay']
  config.schedule.name = protocol['schedule']
  config.schedule.lr = protocol['lr']
  config.schedule.warmup_steps = 0
  config.label_smoothing = 0.0

  # ---- evaluation: the clean test split of the base dataset (derived names keep it clean).
  config.evals.test = dict(type='classification', split='test', batch_size=1000, max_examples=0)
  config.eval_every_steps = 0
  config.log_every_steps = 50
  config.checkpoint_every_steps = 0
  config.keep_checkpoints = 1

  # What the row is, for the table (jaxcv/unlearnable/report.py reads it from config.json).
  config.coin = dict(setting=arg.setting, poison=poison or 'none', defense=defense or 'none',
                     alpha=arg.alpha if defense == 'coin' else 0.0, wrap=arg.wrap,
                     protocol=arg.protocol, base_dataset=base, pb=arg.pb,
                     poison_seed=arg.poison_seed, poison_size=arg.poison_size, flip=arg.flip,
                     # The paper's numbers are for alpha = 2.0 only.
                     reference='' if defense == 'coin' and arg.alpha != 2.0
                     else REFERENCE.get(arg.setting, ''))
  if arg.runlocal:
    config_lib.shrink_for_local_run(config)
  return config


def _add_adversarial_training(config, arg) -> None:
  """PGD adversarial training (L-inf, eps 8/255) through the 'pgd_at' task."""
  config.task = 'pgd_at'
  adversarial.add_adversarial_config(config, eps=arg.pgd_eps, step_size=arg.pgd_step_size,
                                     steps=arg.pgd_steps)
