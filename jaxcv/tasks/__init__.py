"""Training objectives of the single loop, by name (`config.task`)."""

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


def build_task(config, info: DataInfo) -> Task:
  if config.task not in TASKS:
    raise ConfigError(f'unknown task {config.task!r}; known: {sorted(TASKS)}')
  return TASKS[config.task](config, info)
