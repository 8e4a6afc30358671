"""SAN (task san): pixel encoder, ViT semantic generator, SEAT, L_Con + L_Rec + orthogonality.

  python -m jaxcv.main --config configs/san/san.py:preset=cpu --workdir runs/san
Arguments: preset (runlocal | cpu | gpu), data (camvid | textures), seed, steps (0: the
preset's), ablation (none | no_rec | no_orth | no_con), mi (weight of the optional IIC term,
default 0), rec_from (pixel: decode the pixel embeddings F, the default, as spec 08 | generated:
decode F_hat = A S), orth_on (generated S | updated: SEAT's pixel-side semantic features | both,
the default), orth, rec, con (loss weights), temperature (SEAT's softmax temperature).
"""

from jaxcv.errors import ConfigError

from . import common

ABLATIONS = {'none': {}, 'no_rec': {'rec': 0.0}, 'no_orth': {'orth': 0.0}, 'no_con': {'con': 0.0}}


def get_config(arg=None):
  config, p, arg, patch = common.base(dict(ablation='none', mi=0.0, rec_from='pixel',
                                           orth_on='both', orth=1.0, rec=10.0, con=1.0,
                                           temperature=0.1), arg)
  if arg.ablation not in ABLATIONS:
    raise ConfigError(f'ablation must be one of {", ".join(ABLATIONS)}, got {arg.ablation!r}')
  config.task = 'san'
  config.model.name = 'san_net'  # Built by the task (jaxcv/san/models.py); the name is for logs.
  config.model.kwargs.update(dict(vit_hidden=p['vit_hidden'], vit_depth=p['vit_depth'],
                                  vit_heads=p['heads'], patch=patch, temperature=arg.temperature,
                                  project=False, rec_from=arg.rec_from,
                                  semantic_momentum=0.9, decoder_width=p['width'] // 2))
  # [Ours] (spec 08 suggests lambda_Con = lambda_Rec = 1, lambda_orth = 0.1 on S alone): the
  # orthogonality constraint on both the generated S and SEAT's updated semantic features (the
  # pixels' soft cluster means), lambda_orth = 1, and lambda_Rec = 10 (image MSE is ~0.01 while
  # L_Con is ~0.5). With the constraint on S alone the clusters collapsed to 2 of 11 in 400 steps
  # (docs/san.md).
  config.san = {**dict(con=arg.con, rec=arg.rec, orth=arg.orth, orth_on=arg.orth_on, sem=0.0,
                       mi=arg.mi, half_t=1, lamb=1.0),
                **ABLATIONS[arg.ablation]}
  return config
