"""CIFAR-10 KL autoencoder: the first stage for a latent-space variant of the LDM-scaling study.

SD's VAE in miniature (jaxcv/models/autoencoder.py): channels 64, channel_mult (1, 2, 2), so
f = 4 and 32x32x3 images map to 8x8x4 latents (12x fewer numbers, SD's f=8 VAE has 48x);
L1 reconstruction + KL weight 1e-6 as in LDM, no LPIPS or discriminator (see
jaxcv/tasks/autoencoder.py). Adam at 4.5e-6 x batch is LDM's first-stage rule; 2e-4 here at
batch 128 is in that range.

  python -m jaxcv.main --config configs/ldm_scaling/autoencoder_cifar.py --workdir runs/ae_cifar
  python -m jaxcv.main --config configs/ldm_scaling/autoencoder_cifar.py:f=8,latent=8 ...
"""

import ml_collections

from jaxcv import config as config_lib
from jaxcv.errors import ConfigError


def get_config(arg=None):
  arg = config_lib.parse_arg(arg, steps=50_000, batch=128, lr=2e-4, channels=64, f=4, latent=4,
                             loss='l1', kl_weight=1e-6, dtype='bfloat16', dataset='cifar10',
                             runlocal=False)
  if arg.f not in (2, 4, 8):
    raise ConfigError(f'f must be 2, 4 or 8, got {arg.f}')
  config = config_lib.base_config()
  config.task = 'autoencoder'
  config.autoencoder = ml_collections.ConfigDict(
      {'loss': arg.loss, 'kl_weight': arg.kl_weight, 'sample_posterior': True})
  config.data.name = arg.dataset
  config.data.augment = 'flip'
  config.model.name = 'kl_autoencoder'
  config.model.kwargs.channels = arg.channels
  config.model.kwargs.channel_mult = {2: (1, 2), 4: (1, 2, 2), 8: (1, 2, 2, 4)}[arg.f]
  config.model.kwargs.num_res_blocks = 2
  config.model.kwargs.latent_channels = arg.latent
  config.dtype = arg.dtype
  config.batch_size = arg.batch
  config.total_steps = arg.steps
  config.optimizer.name = 'adam'
  config.optimizer.b1 = 0.5  # LDM's first stage uses Adam(0.5, 0.9).
  config.optimizer.b2 = 0.9
  config.optimizer.weight_decay = 0.0
  config.schedule.name = 'constant'
  config.schedule.lr = arg.lr
  config.schedule.warmup_steps = min(1000, arg.steps // 10)
  config.log_every_steps = min(500, max(arg.steps // 50, 1))
  config.checkpoint_every_steps = max(arg.steps // 5, 1)
  if arg.runlocal:
    config_lib.shrink_for_local_run(config)
  return config
