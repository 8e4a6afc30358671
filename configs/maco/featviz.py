"""Feature visualisation of a trained classifier: an evaluation-only run (total_steps=0,
init_checkpoint=run) whose `featviz` evaluator (jaxcv/evaluators/featviz.py) visualises every
class with the four parameterisations and measures them.

  python -m jaxcv.main --config configs/maco/featviz.py:preset=cpu,run=runs/maco/resnet_s0,transfer=runs/maco/resnet_s1+runs/maco/vit,judge=runs/maco/judge \
      --workdir runs/maco/fv_resnet_s0

Arguments: preset (runlocal / cpu / gpu, below), run, transfer (other classifiers' workdirs,
joined by '+'), judge (the FID-proxy classifier's workdir), seed. Every evaluator key is also a
--config.evals.featviz.KEY override.

At CIFAR's 32×32 the canvas is the model input and the crops keep 50-100% of it (Xplique's
0.5 -> 0.05 schedule is for a 512² canvas; a 5% crop of 32 px is under 2 pixels); the noise σ is
Xplique's 0.08 halved for the [0, 1] value range of jaxcv models.
"""

from jaxcv import config as config_lib
from jaxcv.errors import ConfigError

CIFAR = dict(canvas=0, crop_scale_start=0.9, crop_scale_end=0.6, scale_std=0.1, min_scale=0.5,
             center_std=0.15, jitter=1.0, noise=0.04)
PRESETS = {
    'runlocal': dict(CIFAR, steps=4, num_crops=2, targets='0,1,2', reference_examples=60,
                     magnitude_examples=200),
    'cpu': dict(CIFAR, steps=64, num_crops=4, reference_examples=1000,
                magnitude_examples=10000),
    'gpu': dict(CIFAR, steps=256, num_crops=16, reference_examples=10000,
                magnitude_examples=50000),
}


def get_config(arg=None):
  from jaxcv.evaluators import featviz  # pylint: disable=import-outside-toplevel
  arg = config_lib.parse_arg(arg, preset='cpu', run='', transfer='', judge='', seed=0)
  if arg.preset not in PRESETS:
    raise ConfigError(f'preset must be one of {", ".join(PRESETS)}, got {arg.preset!r}')
  if not arg.run:
    raise ConfigError('configs/maco/featviz.py needs run=<workdir of the classifier>')
  transfer = ','.join(p for p in arg.transfer.split('+') if p)
  return featviz.evaluation_config(arg.run, transfer_runs=transfer, judge_run=arg.judge,
                                   seed=arg.seed, **PRESETS[arg.preset])
