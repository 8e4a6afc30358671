"""Stage 2 of SBM: the score model over the frozen stage-1 latents (task sbm_score), and its
coherence / FID-proxy evaluation (evaluator sbm).

  python -m jaxcv.main --config 'configs/sbm/score.py:preset=cpu,modalities=5,encoders=runs/vae_m0;...,classifiers=runs/clf_m0;...' --workdir runs/sbm5
Arguments: preset, modalities, encoders and classifiers (';'-separated run folders in modality
order), variants (the evaluator's samplers, '+'-separated: pc+em+quirk+indep), seed, data_seed.
"""

from jaxcv import config as config_lib

from . import common


def get_config(arg=None):
  arg = config_lib.parse_arg(arg, preset='cpu', modalities=5, encoders='', classifiers='',
                             variants='pc+em+quirk+indep', seed=0, data_seed=0)
  p = common.preset(arg.preset)
  config = common.base(p, p['score_steps'], arg.seed, lr=5e-4)
  config.task = 'sbm_score'
  config.batch_size = 2 * p['batch']
  config.data.name = common.dataset(p, arg.modalities, -1, arg.data_seed)
  config.model.name = 'sbm_score_mlp'
  config.sbm = dict(encoders=arg.encoders, beta0=1.0, beta1=5.0, eps_train=1e-5,
                    hidden=p['hidden'], depth=p['depth'])
  config.ema_decay = 0.999 if arg.preset != 'runlocal' else 0.0
  config.evals.sbm = dict(type='sbm', classifiers=arg.classifiers, split='test',
                          max_examples=p['eval_examples'], num_unconditional=p['uncond'],
                          num_steps=p['sample_steps'], snr=0.16, eps_sample=1e-3,
                          variants=arg.variants.replace('+', ','), seed=arg.seed, batch_size=500)
  return config
