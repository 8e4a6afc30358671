"""The CADet detection benchmark of a trained contrastive encoder: an evaluation-only run
(total_steps=0, init_checkpoint=run) whose `cadet` evaluator (jaxcv/evaluators/cadet.py) builds
the ID calibration / test splits and every shift split, scores m_in, m_out and CADet, and writes
the AUROC tables.

  python -m jaxcv.main --config configs/cadet/evaluate.py:preset=cpu,run=runs/cadet/simclr_s0,classifier=runs/cadet/classifier \
      --workdir runs/cadet/cadet_s0

Arguments: preset (runlocal / cpu / gpu: the sizes below), run (the SimCLR run), classifier (the
supervised run the adversarial images are crafted on; empty: no adversarial splits), seed (the
data splits and the views; the same for every encoder by default, so that the spread is over
encoders). Every setting is also a --config.evals.cadet.KEY override.
"""

import ml_collections

from jaxcv import config as config_lib
from jaxcv.errors import ConfigError

PRESETS = {
    # runlocal: seconds; synthetic novel data, one corruption, PGD and CW, few views.
    'runlocal': dict(calibration_examples=40, id_val_examples=20, id_test_examples=40,
                     ood_examples=20, batch_size=20, attack_steps=2, attacks='pgd,cw',
                     cw_steps=2, n_views='4', min_scales='0.2', corruptions='contrast',
                     severities='5', novel='synthetic:n=32,size=32,classes=3@test'),
    # cpu: 400 images per shift split; n_t in {10, 5} at crop scale (0.2, 1) (n_t = 10 the
    # main setting); CW-L2 with 5 x 10 Adam steps.
    'cpu': dict(calibration_examples=800, id_val_examples=400, id_test_examples=800,
                ood_examples=400, attack_steps=10, cw_steps=10, n_views='10,5',
                min_scales='0.2', corruptions='gaussian_noise,contrast', severities='5'),
    # gpu: the spec's sweep of n_t and min-scale on 1,000-image splits.
    'gpu': dict(calibration_examples=2000, id_val_examples=1000, id_test_examples=2000,
                ood_examples=1000, attack_steps=10, cw_steps=100, n_views='10,25,50',
                min_scales='0.2,0.5,0.75', corruptions='gaussian_noise,defocus_blur,contrast,jpeg',
                severities='3,5', batch_size=200),
}


def preset_settings(preset: str) -> dict:
  if preset not in PRESETS:
    raise ConfigError(f'preset must be one of {", ".join(PRESETS)}, got {preset!r}')
  return PRESETS[preset]


def get_config(arg=None):
  from jaxcv.evaluators import ood  # pylint: disable=import-outside-toplevel
  arg = config_lib.parse_arg(arg, preset='cpu', run='', classifier='', seed=0)
  settings = dict(type='cadet', classifier_run=arg.classifier, seed=arg.seed,
                  **preset_settings(arg.preset))
  if not arg.run:
    raise ConfigError('configs/cadet/evaluate.py needs run=<workdir of the SimCLR run>')
  config = ood.evaluation_config(arg.run)  # The SimCLR run's own config, evaluation only.
  config.evals = ml_collections.ConfigDict({'cadet': settings})
  return config
