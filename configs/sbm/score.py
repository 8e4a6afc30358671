"""Stage 2 of SBM: the score model over the frozen stage-1 latents (task sbm_score), and its
coherence / FID-proxy evaluation (evaluator sbm).

  python -m jaxcv.main --config 'configs/sbm/score.py:preset=cpu,modalities=5,encoders=runs/vae_m0;...,classifiers=runs/clf_m0;...' --workdir runs/sbm5
Arguments: preset, modalities, encoders and classifiers (';'-separated run folders in modality
order), variants (the evaluator's samplers, '+'-separated: pc+em+quirk+indep, and energy<w> for
coherence guidance of weight w), energy (the sbm_energy run of the energy<w> variants,
configs/sbm/energy.py), seed, data_seed.
"""

from jaxcv import config as config_lib

from . import common


def get_config(arg=None):
  arg = config_lib.parse_arg(arg, preset='cpu', modalities=5, encoders='', classifiers='',
                             variants='pc+em+quirk+indep', energy='', seed=0, data_seed=0)
  p = common.preset(arg.preset)
  config = common.latent_stage(p, arg, 'sbm_score', p['score_steps'])
  config.model.name = 'sbm_score_mlp'
  config.evals.sbm = dict(type='sbm', classifiers=arg.classifiers, split='test',
                          max_examples=p['eval_examples'], num_unconditional=p['uncond'],
                          num_steps=p['sample_steps'], snr=0.16, eps_sample=1e-3,
                          variants=arg.variants.replace('+', ','), energy=arg.energy,
                          seed=arg.seed, batch_size=500)
  return config
