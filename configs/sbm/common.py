"""Sizes shared by SBM's configs, per preset (docs/sbm.md):

  runlocal  a few steps of tiny nets on a few hundred tuples (seconds; the tests)
  cpu       8,000 train tuples, d=16 latents, small nets: a 2-core machine in about 20 minutes
  gpu       all 60,000 tuples, d=64 latents, longer training (one H100/H200 lease)
"""

from jaxcv import config as config_lib
from jaxcv.errors import ConfigError

PRESETS = {
    'runlocal': dict(n=256, latent=4, width=8, ae_steps=6, clf_steps=6, clf_width=4,
                     score_steps=6, energy_steps=6, hidden=32, depth=1, batch=32, eval_examples=24,
                     uncond=24, sample_steps=4),
    'cpu': dict(n=8000, latent=16, width=16, ae_steps=700, clf_steps=1500, clf_width=16,
                score_steps=5000, energy_steps=2000, hidden=256, depth=2, batch=64, eval_examples=300,
                uncond=300, sample_steps=50),
    'gpu': dict(n=0, latent=64, width=64, ae_steps=5000, clf_steps=2000, clf_width=32,
                score_steps=30000, energy_steps=10000, hidden=512, depth=4, batch=256, eval_examples=10000,
                uncond=10000, sample_steps=100),
}


def preset(name: str) -> dict:
  if name not in PRESETS:
    raise ConfigError(f'preset must be one of {", ".join(PRESETS)}, got {name!r}')
  return PRESETS[name]


def dataset(p: dict, modalities: int, modality: int = -1, seed: int = 0,
            stack: str = 'channels') -> str:
  """The PolyMNIST name: one modality (stage 1), the tuple stacked on the channel axis
  (stage 2) or on the example axis (the shared classifier)."""
  return (f'polymnist(modality={modality},modalities={modalities},seed={seed},n={p["n"]},'
          f'stack={stack}):mnist')


def base(p: dict, steps: int, seed: int, lr: float):
  """Adam with a cosine decay, no augmentation, one evaluation at the end."""
  config = config_lib.base_config()
  config.seed = seed
  config.data.augment = ''
  config.batch_size = p['batch']
  config.total_steps = steps
  config.optimizer.name = 'adam'
  config.optimizer.weight_decay = 0.0
  config.schedule.name = 'cosine'
  config.schedule.lr = lr
  config.log_every_steps = max(1, min(100, steps // 4))
  config.checkpoint_every_steps = max(steps, 1)
  config.keep_checkpoints = 1
  config.eval_every_steps = 0
  return config


def latent_stage(p: dict, arg, task: str, steps: int):
  """The config of a stage trained on the frozen latents (score model, energy): the tuples,
  Adam 5e-4 at twice the stage-1 batch, EMA 0.999, and config.sbm: the encoders, the VP-SDE
  (beta0 = 1, beta1 = 5 as the official PolyMNIST script) and the MLP's size."""
  config = base(p, steps, arg.seed, lr=5e-4)
  config.task = task
  config.batch_size = 2 * p['batch']
  config.data.name = dataset(p, arg.modalities, -1, arg.data_seed)
  config.sbm = dict(encoders=arg.encoders, beta0=1.0, beta1=5.0, eps_train=1e-5,
                    hidden=p['hidden'], depth=p['depth'])
  config.ema_decay = 0.999 if arg.preset != 'runlocal' else 0.0
  return config
