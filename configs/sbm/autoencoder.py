"""Stage 1 of SBM: the autoencoder of one PolyMNIST modality (task unimodal_ae).

  python -m jaxcv.main --config configs/sbm/autoencoder.py:preset=cpu,modality=0 --workdir runs/vae_m0
Arguments: preset (runlocal | cpu | gpu), modality, modalities (of the dataset name; modality k
is the same in the 5- and 10-modality sets), variant (vae: beta 0.5 | rae: beta 1e-5 and
decoder noise 0.01, as the official PolyMNIST scripts), seed, data_seed.
"""

from jaxcv import config as config_lib
from jaxcv.errors import ConfigError

from . import common

VARIANTS = {'vae': dict(variational=True, beta=0.5, decoder_noise=0.0),
            'rae': dict(variational=False, beta=1e-5, decoder_noise=0.01)}


def get_config(arg=None):
  arg = config_lib.parse_arg(arg, preset='cpu', modality=0, modalities=5, variant='vae', seed=0,
                             data_seed=0)
  p = common.preset(arg.preset)
  if arg.variant not in VARIANTS:
    raise ConfigError(f'variant must be one of {", ".join(VARIANTS)}, got {arg.variant!r}')
  config = common.base(p, p['ae_steps'], arg.seed, lr=2e-3)
  config.task = 'unimodal_ae'
  config.data.name = common.dataset(p, arg.modalities, arg.modality, arg.data_seed)
  config.model.name = 'unimodal_autoencoder'
  config.model.kwargs.latent_dim = p['latent']
  config.model.kwargs.width = p['width']
  config.unimodal = VARIANTS[arg.variant]
  config.evals.test = dict(type='reconstruction', split='test', max_examples=p['eval_examples'])
  return config
