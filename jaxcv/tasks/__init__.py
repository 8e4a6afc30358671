"""Training objectives of the single loop, by name (`config.task`)."""

import importlib

from jaxcv.errors import ConfigError
from jaxcv.tasks.base import DataInfo, Task, TrainState
from jaxcv.tasks.classification import ClassificationTask
from jaxcv.tasks.diffusion import DiffusionTask
from jaxcv.tasks.adversarial import PGDATTask, TRADESTask
from jaxcv.tasks.afd import AFDTask
from jaxcv.tasks.autoencoder import AutoencoderTask

TASKS: dict[str, type[Task]] = {
    'classification': ClassificationTask,
    'diffusion': DiffusionTask,
    'pgd_at': PGDATTask,
    'trades': TRADESTask,
    'afd': AFDTask,
    'autoencoder': AutoencoderTask,
}


# Tasks that live with their recipe's package and register themselves when it is imported.
_TASK_MODULES = {'airbench': 'jaxcv.fast', 'erm_pp': 'jaxcv.domain_generalization.erm_pp'}


def build_task(config, info: DataInfo) -> Task:
  if config.task not in TASKS and config.task in _TASK_MODULES:
    importlib.import_module(_TASK_MODULES[config.task])
  if config.task not in TASKS:
    known = sorted(set(TASKS) | set(_TASK_MODULES))
    raise ConfigError(f'unknown task {config.task!r}; known: {known}')
  return TASKS[config.task](config, info)
