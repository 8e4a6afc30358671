"""CIFAR-10 class-conditional pixel diffusion: the small-scale analogue of the LDM-scaling study.

Mei et al. 2024 ("Bigger is not Always Better", arXiv:2404.01367) train one UNet family with one
recipe, changing only the base width c. Here: `small_unet(c)` (levels [c, 2c, 2c, 2c] at
32/16/8/4 px, two res blocks per level, transformer blocks at 16x16 and in the middle), class
labels through a learned embedding the UNet cross-attends to, 10% null labels for
classifier-free guidance. The paper leaves the recipe open; jaxcv's choices (docs/ldm_scaling.md):
  - v-prediction with the cosine schedule (T = 1000): well conditioned at t = T-1, where the
    trailing-spaced few-step samplers start (ε-prediction divides by √ᾱ ≈ 0 there);
  - AdamW (b2 = 0.99, no weight decay), lr 2e-4 with 1k warmup then constant, grad clip 1,
    batch 128, EMA 0.9999 (DDPM's CIFAR recipe with Adam -> AdamW), bf16 compute;
  - GroupNorm with 16 groups for every width, so c = 48 is in the family too (`groups=`).

  python -m jaxcv.main --config configs/ldm_scaling/cifar10_unet.py:width=64 --workdir runs/w64
  python -m jaxcv.sweep --table configs/ldm_scaling/table.py:cpu --workdir runs/ldm_scaling
"""

from jaxcv import config as config_lib
from jaxcv.tasks.diffusion import add_diffusion_config


def get_config(arg=None):
  arg = config_lib.parse_arg(
      arg, width=64, steps=100_000, batch=128, lr=2e-4, warmup=1000, ema=0.9999,
      schedule='cosine', prediction='v', dtype='bfloat16', fsdp=1, train_examples=0,
      checkpoints=5, blocks=2, mult='1-2-2-2', attention='1', groups=16, dataset='cifar10',
      runlocal=False)
  config = config_lib.base_config()
  add_diffusion_config(config, schedule=arg.schedule, prediction=arg.prediction,
                       conditioning='class', label_dropout=0.1, context_dim=128, context_len=1)
  config.data.name = arg.dataset.replace(';', ',')  # parse_arg splits on ','.
  config.data.augment = 'flip'
  if arg.train_examples:
    config.data.train_examples = arg.train_examples
  config.model.name = 'small_unet'
  config.model.kwargs.base_width = arg.width
  # GroupNorm groups: 16 (every width a multiple of 16); 8 admits c = 8 and 24 (the cpu preset).
  config.model.kwargs.num_groups = arg.groups
  config.model.kwargs.num_res_blocks = arg.blocks
  # Level multipliers: DDPM-CIFAR's [1, 2, 2, 2] (default) or the paper's [1, 2, 4, 4].
  config.model.kwargs.channel_mult = tuple(int(m) for m in arg.mult.split('-'))
  # Levels with transformer blocks ('-'-separated; default the 16x16 level; empty: none, the
  # CPU-sized generator of BROAD's synthetic split).
  if str(arg.attention) != '1':  # Set only when asked: other denoisers need not take it.
    config.model.kwargs.attention_levels = tuple(int(l) for l in str(arg.attention).split('-')
                                                 if l)
  config.dtype = arg.dtype
  config.batch_size = arg.batch
  config.total_steps = arg.steps
  config.optimizer.name = 'adamw'
  config.optimizer.b1 = 0.9
  config.optimizer.b2 = 0.99
  config.optimizer.weight_decay = 0.0
  config.optimizer.grad_clip_norm = 1.0
  config.schedule.name = 'constant'
  config.schedule.lr = arg.lr
  config.schedule.warmup_steps = min(arg.warmup, arg.steps // 10)
  config.ema_decay = arg.ema
  config.eval_with_ema = True
  # Evenly spaced checkpoints, kept for the FID-vs-training-compute curve.
  config.checkpoint_every_steps = max(arg.steps // arg.checkpoints, 1)
  config.keep_checkpoints = arg.checkpoints + 1
  config.log_every_steps = min(500, max(arg.steps // 20, 1))
  if arg.fsdp > 1:
    config.mesh.fsdp = arg.fsdp
    config.mesh.data = -1
    config.param_sharding = _fsdp_rules()
  if arg.runlocal:
    config_lib.shrink_for_local_run(config)
    config.model.kwargs.num_res_blocks = 1
  return config


def _fsdp_rules():
  try:
    from jaxcv.diffusion import sharding  # pylint: disable=import-outside-toplevel
    return tuple(sharding.unet_fsdp_rules())
  except (ImportError, AttributeError):
    return (('kernel', 'fsdp'), ('.*', 'replicate'))
