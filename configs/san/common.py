"""Sizes and the evaluation shared by SAN's configs, per preset (docs/san.md):

  runlocal  a few steps of tiny nets on 32x32 synthetic texture regions (seconds; the tests)
  cpu       CamVid downscaled from 180x240 to 96x128 (train 367 images; scored transductively on
            test, 233 images), small nets at stride 4, 300 steps of 8 images: the table's 18 rows
            took 26 minutes of row time on the 2-core machine shared with other jobs (load ~8),
            less when idle (at 180x240 a row was ~10x slower)
  gpu       CamVid 180x240, wider nets, longer training (one H100/H200 lease)
data=textures swaps CamVid for the synthetic texture-region set at any preset.
"""

from jaxcv import config as config_lib
from jaxcv.errors import ConfigError

PRESETS = {
    'runlocal': dict(camvid=None, steps=3, batch=8, width=8, dim=8, depth=1, vit_hidden=16,
                     vit_depth=1, heads=2, patch=8, eval_examples=8, geometry_examples=4,
                     pixels=256, lr=1e-3),
    'cpu': dict(camvid=(96, 128), steps=300, batch=8, width=32, dim=32, depth=2, vit_hidden=64,
                vit_depth=2, heads=4, patch=16, eval_examples=0, geometry_examples=24,
                pixels=2048, lr=1e-3),
    'gpu': dict(camvid=None, steps=2000, batch=32, width=64, dim=64, depth=3, vit_hidden=128,
                vit_depth=4, heads=4, patch=20, eval_examples=0, geometry_examples=64,
                pixels=4096, lr=5e-4),
}
DATA = ('camvid', 'textures')


def preset(name: str) -> dict:
  if name not in PRESETS:
    raise ConfigError(f'preset must be one of {", ".join(PRESETS)}, got {name!r}')
  return PRESETS[name]


def base(arg_defaults: dict, arg):
  """The config every method shares: data, Adam, the two evaluators. Returns (config, preset)."""
  arg = config_lib.parse_arg(arg, preset='cpu', data='', seed=0, steps=0, **arg_defaults)
  p = preset(arg.preset)
  data = arg.data or ('textures' if arg.preset == 'runlocal' else 'camvid')
  if data not in DATA:
    raise ConfigError(f'data must be one of {", ".join(DATA)}, got {data!r}')
  config = config_lib.base_config()
  config.seed = arg.seed
  if data == 'camvid':
    size = p['camvid']
    config.data.name = f'resized(height={size[0]},width={size[1]}):camvid' if size else 'camvid'
    eval_split, patch = 'test', p['patch']
  else:
    n, side = (64, 32) if arg.preset == 'runlocal' else (2000, 64)
    config.data.name, eval_split, patch = f'texture_regions(n={n},side={side})', 'val', 8
  config.data.augment = ''
  config.batch_size = p['batch']
  config.total_steps = arg.steps or p['steps']
  config.optimizer.name = 'adam'
  config.optimizer.weight_decay = 0.0
  config.schedule.name = 'cosine'
  config.schedule.lr = p['lr']
  config.schedule.warmup_steps = min(50, config.total_steps // 10)
  config.log_every_steps = max(1, min(50, config.total_steps // 4))
  config.checkpoint_every_steps = max(config.total_steps, 1)
  config.keep_checkpoints = 1
  config.eval_every_steps = 0
  config.model.kwargs = dict(width=p['width'], dim=p['dim'], stride=4, depth=p['depth'])
  # Transductive, as STEGO's cluster probe and IIC's unsupervised mode: the Hungarian mapping is
  # fit on the scored split itself.
  config.evals.seg = dict(type='segmentation', split=eval_split, batch_size=16,
                          max_examples=p['eval_examples'], matching='hungarian',
                          cluster_usage=True, min_cluster_share=0.001, figure_examples=3)
  config.evals.geometry = dict(type='pixel_geometry', split=eval_split,
                               max_examples=p['geometry_examples'], pixels=p['pixels'])
  return config, p, arg, patch
