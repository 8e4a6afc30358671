"""The CIFAR-10 classifiers MACO's table visualises (docs/maco.md), one config per architecture:

  arch=resnet  configs/cifar10/resnet18.py's recipe: runlocal a small CNN on the shipped sample;
               cpu resnet_tiny of width 8, `epochs` (0.6); gpu ResNet-18, 30 epochs
  arch=vit     a ViT with patch 4 (AdamW, cosine with warm-up): runlocal dim 16 / depth 1;
               cpu dim 48, depth 3, 1 epoch; gpu dim 192, depth 8 (timm's vit_tiny width)
  arch=judge   the independent network whose features give the FID/KID proxy: small_cnn

  python -m jaxcv.main --config configs/maco/classifier.py:preset=cpu,arch=vit --workdir runs/vit
"""

from jaxcv import config as config_lib
from jaxcv.errors import ConfigError

from ..cifar10 import resnet18

RESNET = {
    'runlocal': 'runlocal,model=small_cnn,dtype=float32,dataset=cifar10_sample',
    'cpu': 'model=resnet_tiny,dtype=float32,epochs=0.6,batch=256,lr=0.2',
    'gpu': 'epochs=30',
}
JUDGE = {
    'runlocal': 'runlocal,model=small_cnn,dtype=float32,dataset=cifar10_sample',
    'cpu': 'model=small_cnn,dtype=float32,epochs=1,batch=256,lr=0.2',
    'gpu': 'model=small_cnn,dtype=float32,epochs=10,batch=256,lr=0.2',
}
VIT = {  # (recipe arguments, ViT size)
    'runlocal': ('runlocal,model=vit,dtype=float32,dataset=cifar10_sample',
                 dict(dim=16, depth=1, num_heads=2, mlp_dim=32)),
    'cpu': ('model=vit,dtype=float32,epochs=1,batch=256',
            dict(dim=48, depth=3, num_heads=3, mlp_dim=96)),
    'gpu': ('model=vit,epochs=30,batch=256', dict(dim=192, depth=8, num_heads=3, mlp_dim=768)),
}


def get_config(arg=None):
  arg = config_lib.parse_arg(arg, preset='cpu', arch='resnet', seed=0, epochs=0.0)
  if arg.preset not in RESNET:
    raise ConfigError(f'preset must be one of {", ".join(RESNET)}, got {arg.preset!r}')
  epochs = f',epochs={arg.epochs}' if arg.epochs else ''
  if arg.arch == 'resnet':
    config = resnet18.get_config(RESNET[arg.preset] + epochs)
  elif arg.arch == 'judge':
    config = resnet18.get_config(JUDGE[arg.preset] + epochs)
  elif arg.arch == 'vit':
    recipe, size = VIT[arg.preset]
    config = resnet18.get_config(recipe + epochs)
    config.model.kwargs.patch_size = 4
    for key, value in size.items():
      config.model.kwargs[key] = value
    config.optimizer.name = 'adamw'
    config.optimizer.weight_decay = 0.05
    config.optimizer.decay_norm_and_bias = False
    config.schedule.name = 'cosine'
    config.schedule.lr = 1e-3
    config.schedule.warmup_steps = min(100, config.total_steps or 100)
  else:
    raise ConfigError(f"arch must be 'resnet', 'vit' or 'judge', got {arg.arch!r}")
  if arg.preset == 'cpu':
    if config.model.name == 'resnet_tiny':
      config.model.kwargs.width = 8
    config.evals.test.max_examples = 2000  # Evenly spaced test images: accuracy for the record.
  config.seed = arg.seed
  return config
