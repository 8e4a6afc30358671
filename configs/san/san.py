"""SAN (task san): pixel encoder, ViT semantic generator, SEAT, L_Con + L_Rec + orthogonality.

  python -m jaxcv.main --config configs/san/san.py:preset=cpu --workdir runs/san
Arguments: preset (runlocal | cpu | gpu), data (camvid | textures), seed, steps (0: the
preset's), ablation (none | no_rec | no_orth | no_con), mi (weight of the optional IIC term,
default 0), rec_from (pixel: decode the pixel embeddings F, the default, as spec 08 | generated:
decode F_hat = A S).
"""

from jaxcv.errors import ConfigError

from . import common

ABLATIONS = {'none': {}, 'no_rec': {'rec': 0.0}, 'no_orth': {'orth': 0.0}, 'no_con': {'con': 0.0}}


def get_config(arg=None):
  config, p, arg, patch = common.base(dict(ablation='none', mi=0.0, rec_from='pixel'), arg)
  if arg.ablation not in ABLATIONS:
    raise ConfigError(f'ablation must be one of {", ".join(ABLATIONS)}, got {arg.ablation!r}')
  config.task = 'san'
  config.model.kwargs.update(dict(vit_hidden=p['vit_hidden'], vit_depth=p['vit_depth'],
                                  vit_heads=p['heads'], patch=patch, temperature=0.1,
                                  project=False, rec_from=arg.rec_from,
                                  semantic_momentum=0.9, decoder_width=p['width'] // 2))
  # Suggested defaults of spec 08 [Ours]: lambda_Con = lambda_Rec = 1, lambda_orth = 0.1.
  config.san = {**dict(con=1.0, rec=1.0, orth=0.1, sem=0.0, mi=arg.mi, half_t=1, lamb=1.0),
                **ABLATIONS[arg.ablation]}
  return config
