"""A tiny synthetic classification run for tests: seconds on a CPU."""

from jaxcv import config as config_lib


def get_config(arg=None):
  arg = config_lib.parse_arg(arg, steps=20, model='small_cnn')
  config = config_lib.base_config()
  config.data.name = 'synthetic:n=512,size=8,classes=4'
  config.data.augment = 'crop(padding=1)|flip'
  config.model.name = arg.model
  config.batch_size = 32
  config.total_steps = arg.steps
  config.schedule.name = 'cosine'
  config.schedule.lr = 0.05
  config.schedule.warmup_steps = 2
  config.evals.test = dict(type='classification', split='test', batch_size=64)
  config.log_every_steps = 5
  config.checkpoint_every_steps = 5
  config.progress_bar = False
  config.plot = False
  return config
