"""The 'airbench' task: classification with airbench94's Lookahead and alternating flip.

Lookahead (Zhang et al. 2019, as airbench94 uses it): every `lookahead_every` steps the slow
copy moves towards the trained weights, slow += (1 - decay_t) * (fast - slow), and training
continues from the slow copy; decay_t = lookahead_decay * (t / total_steps)^3, so early syncs
follow the fast weights and late ones average strongly. BatchNorm running statistics take part,
as they do in airbench's state_dict-based version. After the last step the weights are the slow
copy. Config section `config.fast`:
  altflip: alternating flip instead of random flip (needs data.loader='device').
  lookahead_every: sync period in steps (0 disables Lookahead).
  lookahead_decay: decay at the end of training (0.95**5 in airbench94).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxcv.errors import ConfigError
from jaxcv.fast.augment import alternating_flip
from jaxcv.tasks import TASKS
from jaxcv.tasks.base import TrainState
from jaxcv.tasks.classification import ClassificationTask


class AirbenchTask(ClassificationTask):

  def __init__(self, config, info):
    super().__init__(config, info)
    fast = config.get('fast', None)
    if fast is None:
      raise ConfigError("task 'airbench' needs a config.fast section (see configs/fast_cifar10)")
    self.altflip = bool(fast.altflip)
    self.lookahead_every = int(fast.lookahead_every)
    self.lookahead_decay = float(fast.lookahead_decay)
    self.steps_per_epoch = max(info.num_train_examples // config.batch_size, 1)
    self.total_steps = (config.total_steps if config.total_steps is not None
                        else int(round(config.num_epochs * self.steps_per_epoch)))
    self.wants_example_ids = self.altflip

  def augment(self, rng, batch):
    images = self._augment(rng, batch['image'])  # translate(...) from config.data.augment.
    if self.altflip:
      epoch = batch['step'] // self.steps_per_epoch
      images = alternating_flip(images, batch['example_id'], epoch, self.config.seed)
    return {'image': images, 'label': batch['label']}

  def init_extra(self, rng, params, model_state):
    del rng
    if not self.lookahead_every:
      return None
    return {'slow_params': params, 'slow_state': dict(model_state)}

  def after_update(self, state: TrainState) -> TrainState:
    if not self.lookahead_every:
      return state
    step = state.step  # Steps done so far.
    sync = step % self.lookahead_every == 0
    decay = self.lookahead_decay * (step / self.total_steps) ** 3
    weight = jnp.where(sync, 1.0 - decay, 0.0)
    # After the last step the weights become the slow copy, synced or not (airbench's decay=1).
    adopt = sync | (step >= self.total_steps)
    fast = {'slow_params': state.params, 'slow_state': state.model_state}

    def move(slow, new):
      if not jnp.issubdtype(slow.dtype, jnp.floating):
        return slow
      return slow + weight.astype(slow.dtype) * (new - slow)

    slow = jax.tree.map(move, state.extra, fast)
    current = jax.tree.map(lambda s, f: jnp.where(adopt, s, f), slow, fast)
    return state.replace(params=current['slow_params'], model_state=current['slow_state'],
                         extra=slow)


TASKS['airbench'] = AirbenchTask
