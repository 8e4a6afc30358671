"""Training objectives of the single loop, by name (`config.task`).

A task module registers its class with `@register('name')`; `TASKS[name]` imports the module on
first use (jaxcv/plugins.py), so importing the loop imports no task it does not run (nor their
attacks, diffusion or paper packages). Tasks that live with their recipe's package are in the
index too.
"""

from jaxcv import plugins
from jaxcv.tasks.base import DataInfo, Task, TrainState

TASKS = plugins.Registry('task', package='jaxcv.tasks', modules={
    'classification': 'jaxcv.tasks.classification',
    'diffusion': 'jaxcv.tasks.diffusion',
    'pgd_at': 'jaxcv.tasks.adversarial',
    'trades': 'jaxcv.tasks.adversarial',
    'afd': 'jaxcv.tasks.afd',
    'autoencoder': 'jaxcv.tasks.autoencoder',
    'airbench': 'jaxcv.fast',
    'erm_pp': 'jaxcv.domain_generalization.erm_pp',
    'unimodal_ae': 'jaxcv.multimodal.tasks',
    'sbm_score': 'jaxcv.multimodal.tasks',
    'sbm_energy': 'jaxcv.multimodal.energy',
    **{name: 'jaxcv.san.tasks' for name in ('san', 'iic_seg', 'picie')},
    'simclr': 'jaxcv.tasks.simclr',
})
register = TASKS.register


def build_task(config, info: DataInfo) -> Task:
  return TASKS[config.task](config, info)


__all__ = ['DataInfo', 'TASKS', 'Task', 'TrainState', 'build_task', 'register']
