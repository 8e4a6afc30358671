"""Stage 3 of SBM, optional: the pairwise coherence energy over the frozen stage-1 latents (task
sbm_energy, jaxcv/multimodal/energy.py), used by the sbm evaluator's energy<w> variants.

  python -m jaxcv.main --config 'configs/sbm/energy.py:preset=cpu,modalities=5,encoders=runs/vae_m0;...' --workdir runs/ebm5
Arguments: preset, modalities, encoders (';'-separated stage-1 runs in modality order: those of
the score model it guides), seed, data_seed. Adam 5e-4 as the official guidance scripts; its
network is ours (the official class is not released).
"""

from jaxcv import config as config_lib

from . import common


def get_config(arg=None):
  arg = config_lib.parse_arg(arg, preset='cpu', modalities=5, encoders='', seed=0, data_seed=0)
  p = common.preset(arg.preset)
  config = common.latent_stage(p, arg, 'sbm_energy', p['energy_steps'])
  config.model.name = 'sbm_pair_energy'
  return config
