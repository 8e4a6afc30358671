"""Training objectives of the single loop, by name (`config.task`)."""

from jaxcv.errors import ConfigError
from jaxcv.tasks.base import DataInfo, Task, TrainState
from jaxcv.tasks.classification import ClassificationTask

TASKS: dict[str, type[Task]] = {
    'classification': ClassificationTask,
}


def build_task(config, info: DataInfo) -> Task:
  if config.task not in TASKS:
    raise ConfigError(f'unknown task {config.task!r}; known: {sorted(TASKS)}')
  return TASKS[config.task](config, info)
