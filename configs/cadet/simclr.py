"""SimCLR pre-training on CIFAR-10 (task 'simclr', jaxcv/tasks/simclr.py) with a linear probe at
the end (evaluator 'linear_probe'): the contrastive encoder CADet and the MMD test use.

  python -m jaxcv.main --config configs/cadet/simclr.py:preset=cpu,seed=0 --workdir runs/simclr

Presets:
  runlocal  small CNN, a few steps on the shipped CIFAR-10 sample (seconds; the tests)
  cpu       resnet_tiny (4 stages of one basic block, 0.09M parameters) of width `width` (8),
            batch 256, `steps` (250) LARS steps on CIFAR-10 train (1.3 epochs): about 5 minutes
            on an idle 2-core machine (1.2 s a step, 512 views, measured at load 5); probe on
            10,000 train / 2,000 test images
  gpu       ResNet-18 (CIFAR stem), bf16, batch 512, `epochs` (50: one 15-minute lease) on
            CIFAR-10 train; probe on the full splits (the reproduction plan's encoder; target
            >= 80 % probe accuracy, not yet measured)

SimCLR's CIFAR recipe: tau = 0.5, 128-d projection, crop scale (0.08, 1) [here 0.2, as common
CIFAR ports use for 32-px images], flip, colour jitter of strength 0.5 with p = 0.8, grayscale
p = 0.2, no blur; LARS (optax.lars) with linear warm-up and cosine decay, weight decay 1e-6 on
kernels only (norms and biases get neither decay nor the trust ratio).
"""

from jaxcv import config as config_lib
from jaxcv.data.statistics import input_normalization
from jaxcv.errors import ConfigError
from jaxcv.tasks import simclr

AUGMENT = ('resized_crop(scale=(0.2, 1.0))|flip|color_jitter(strength=0.5, p=0.8)|'
           'random_grayscale(p=0.2)')
PRESETS = ('runlocal', 'cpu', 'gpu')


def get_config(arg=None):
  arg = config_lib.parse_arg(arg, preset='cpu', seed=0, steps=0, epochs=50.0, width=8,
                             lr=0.0, head='v1', temperature=0.5, blur=False)
  if arg.preset not in PRESETS:
    raise ConfigError(f'preset must be one of {", ".join(PRESETS)}, got {arg.preset!r}')
  config = config_lib.base_config()
  config.seed = arg.seed
  config.task = 'simclr'
  config.simclr = simclr.default_config()
  config.simclr.head = arg.head
  config.simclr.temperature = arg.temperature
  config.data.name = 'cifar10'
  config.data.augment = AUGMENT + ('|blur(p=0.5)' if arg.blur else '')
  config.model.kwargs.input_mean, config.model.kwargs.input_std = (
      input_normalization('cifar10'))
  config.optimizer.name = 'lars'
  config.optimizer.momentum = 0.9
  config.optimizer.nesterov = False
  config.optimizer.weight_decay = 1e-6
  config.optimizer.decay_norm_and_bias = False
  config.schedule.name = 'cosine'
  probe = dict(type='linear_probe', train_examples=10_000, test_examples=2_000)
  if arg.preset == 'gpu':
    config.model.name = 'resnet18'
    config.dtype = 'bfloat16'
    config.batch_size = 512
    config.num_epochs = arg.epochs
    config.schedule.lr = arg.lr or 0.075 * 512 ** 0.5  # SimCLR's square-root scaling.
    steps = int(arg.epochs * (50_000 // 512))
    probe.update(train_examples=0, test_examples=0)
  else:
    config.model.name = 'small_cnn' if arg.preset == 'runlocal' else 'resnet_tiny'
    config.model.kwargs.width = arg.width
    config.batch_size = 256
    steps = arg.steps or 250
    config.total_steps = steps
    config.schedule.lr = arg.lr or 1.0
  config.schedule.warmup_steps = max(1, steps // 10)
  config.evals.probe = probe
  config.log_every_steps = 25
  config.checkpoint_every_steps = 100
  config.progress_bar = False
  if arg.preset == 'runlocal':
    config.data.name = 'cifar10_sample'
    config.model.kwargs.width = 8
    config_lib.shrink_for_local_run(config)
    config.total_steps = arg.steps or 6
    config.evals.probe.update(train_examples=200, test_examples=100, max_iter=200)
  return config
