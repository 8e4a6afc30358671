"""Evaluates a run (plain, adversarially trained or AFD; its EMA weights when it kept them, D1
folded into the head) on CIFAR-10: clean, PGD-20 at step 0.003 (the paper's code) and at 2/255, and the
APGD-CE + APGD-T ensemble (jaxcv's AutoAttack proxy), all at L-inf eps 8/255, BN in eval mode.

  python -m jaxcv.main --config configs/afd/evaluate.py:init=runs/afd --workdir runs/afd_eval
  ... :init=runs/afd,examples=0,weights=params    # whole test set, raw (non-EMA) weights

Arguments: examples (0 = all 10,000), apgd_steps, targets (APGD-T target classes), weights
(auto: EMA when the run kept them; ema; params).
"""

from jaxcv.errors import ConfigError
from jaxcv.tasks.adversarial import add_adversarial_config

from . import common


def get_config(arg=None):
  config, arg = common.base(arg, init='', examples=1000, weights='auto', apgd_steps=100,
                            targets=9, batch=500)
  if not arg.init and not arg.runlocal:
    raise ConfigError('evaluate.py needs init=<workdir of the run to evaluate>')
  config.task = 'pgd_at'  # Any plain-network task: only its predict functions are used.
  add_adversarial_config(config, init_from=arg.weights)
  config.init_checkpoint = arg.init
  config.total_steps = 0
  config.batch_size = 8  # Unused (no training); divisible by any test device count.
  examples = arg.examples or None
  config.evals.robust = dict(
      type='robustness', split='test', batch_size=arg.batch, max_examples=examples or 0,
      eps=8 / 255, attacks=common.PGD_ATTACKS + (
          ('apgd_ce', f'apgd_ce(steps={arg.apgd_steps})'),
          ('apgd_t', f'apgd_t(steps={arg.apgd_steps}, num_targets={arg.targets})')),
      worst_case_of=('apgd_ce', 'apgd_t'))  # The AA-proxy column.
  if arg.runlocal:
    config.evals.robust.max_examples = 64
    config.evals.robust.batch_size = 32
  return config
