"""ERM++ on DomainBed's protocol: one run of the recipe's chain (jaxcv/domain_generalization/erm_pp.py).

Built on configs/domainbed/erm.py (its dataset defaults, balanced per-environment batches and
evaluators), with ERM++'s switches:

  stage=probe   linear probing (WS): the head alone trains (`linear_steps` steps, `linear_lr`)
  stage=train   pass 1: the source envs' `in` parts, evaluated every `eval_every` steps on their
                `out` parts (val) and on the test env (test_in, test_out, for the report only)
  stage=full    pass 2 (FD): the source envs whole (`train_full`), for `steps`, or for the step
                pass 1 selected when `steps_from=<pass-1 workdir>` (LT); evaluated at the end
  average=uniform|none     MPA: the uniform average from `average_start` (evaluated; the trained
                weights are logged beside it as *_plain); batch_stats=refresh|average|online
  freeze_bn                DomainBed's historical frozen BN (ERM++ unfreezes it: the default)
  trainable=REGEX          parameters that train (attn: attention-only for ViTs)
  init=PATH, fresh_head    start from another run (a probe, or a backbone pretrained elsewhere)
  miro, miro_weight=0.1    the MIRO regulariser (optional in ERM++): the starting network's
                           stage features, frozen, anchor the trained ones; its variance
                           encoders train at miro_lr_mult=10 x the lr

  python -m jaxcv.main --config configs/erm_pp/erm_pp.py:dataset=rotated_mnist,test=75,stage=train \\
      --workdir runs/erm_pp/p1
  python -m jaxcv.main --config configs/erm_pp/erm_pp.py:dataset=rotated_mnist,test=75,stage=full,steps_from=runs/erm_pp/p1 \\
      --workdir runs/erm_pp/p2
"""

from jaxcv import config as config_lib
from jaxcv.domain_generalization import erm_pp, splits
from jaxcv.errors import ConfigError

from ..domainbed import erm as domainbed_erm

STAGES = ('probe', 'train', 'full')
# Passed through to configs/domainbed/erm.py.
ERM_ARGS = dict(dataset='rotated_mnist', test='75', trial=0, holdout=0.2, steps=5001, lr=0.0,
                per_domain=0, envs=0, model='', image_size=0, dtype='float32', runlocal=False)


def get_config(arg=None):
  arg = config_lib.parse_arg(
      arg, **ERM_ARGS, stage='train', seed=-1, steps_from='', linear_steps=500, linear_lr=5e-5,
      average='uniform', average_start=600, batch_stats='refresh', freeze_bn=False,
      trainable='', init='', fresh_head=False, eval_every=0, eval_examples=0, miro=False,
      miro_weight=0.1, miro_lr_mult=10.0)
  if arg.stage not in STAGES:
    raise ConfigError(f'erm_pp stage must be one of {STAGES}, got {arg.stage!r}')
  if arg.average not in ('uniform', 'none'):
    raise ConfigError(f"erm_pp average must be 'uniform' or 'none', got {arg.average!r}")
  steps = arg.steps
  if arg.stage == 'full' and arg.steps_from:
    steps = erm_pp.selected_step(arg.steps_from)  # Validation keys only.
  elif arg.stage == 'probe':
    steps = arg.linear_steps
  config = domainbed_erm.get_config(','.join(
      f'{k}={arg[k]}' for k in ERM_ARGS if k != 'steps') + f',steps={steps}')
  trainable = {'attn': erm_pp.ATTENTION_ONLY}.get(arg.trainable, arg.trainable)
  if arg.stage == 'probe':
    trainable = erm_pp.HEAD_ONLY
    config.schedule.lr = arg.linear_lr
  miro = (dict(use_miro=True, miro_weight=arg.miro_weight, miro_lr_mult=arg.miro_lr_mult)
          if arg.miro and arg.stage != 'probe' else {})  # A probe's features do not move.
  erm_pp.add_erm_pp_config(config, trainable=trainable, freeze_bn=arg.freeze_bn,
                           fresh_head=arg.fresh_head, **miro)
  config.seed = arg.trial if arg.seed < 0 else arg.seed
  config.init_checkpoint = arg.init
  if arg.eval_every:
    config.eval_every_steps = config.log_every_steps = arg.eval_every
  averaged = arg.average == 'uniform' and arg.stage != 'probe'
  if averaged:
    config.averaging.kind = 'uniform'
    config.averaging.start_step = arg.average_start
    config.averaging.batch_stats = arg.batch_stats

  evals = splits.evals_config(batch_size=512)
  if arg.stage == 'full':
    config.data.train_split = 'train_full'  # Never the test environment (splits.py).
    # The source envs' out parts are training data in this pass; no selection follows it.
    del evals['val'], evals['test_out']
    config.eval_every_steps = 0
  if arg.stage == 'probe':
    evals = {}
  config.evals = {}
  for name, evaluator in evals.items():
    if arg.eval_examples:
      evaluator.max_examples = arg.eval_examples
    config.evals[name] = evaluator
    if averaged:  # The trained weights beside the averaged ones: ERM's numbers from this run.
      config.evals[f'{name}_plain'] = {**evaluator.to_dict(), 'weights': 'plain'}
  if arg.runlocal:
    config.total_steps = min(config.total_steps, 10)
  return config
