"""OOD evaluation of a trained run through the single loop (the `ood` evaluator, evaluation only).

  python -m jaxcv.main --config configs/ood/evaluate.py:run=runs/resnet18 --workdir runs/r18_ood \
      --config.evals.ood.datasets='tiny_imagenet_val,dtd10,corrupt(kind=contrast):cifar10' \
      --config.evals.ood.detectors='msp,energy,mds,vim,knn(k=50)'

Arguments: run (the run's workdir), weights ('plain' or 'ema'). Every key of the evaluator
(jaxcv/evaluators/ood.py) is a --config.evals.ood.KEY override; the run's own config gives the
task (an AFD run is evaluated as its folded plain classifier), model and ID data.
"""

from jaxcv import config as config_lib
from jaxcv.errors import ConfigError


def get_config(arg=None):
  from jaxcv.evaluators import ood  # pylint: disable=import-outside-toplevel
  arg = config_lib.parse_arg(arg, run='', weights='plain')
  if not arg.run:
    raise ConfigError('configs/ood/evaluate.py needs run=<workdir of the run to evaluate>')
  return ood.evaluation_config(arg.run, weights=arg.weights)
