"""The task hooks later papers build on: extra state (a frozen teacher), partial training and
after-update hooks, all through the one loop."""

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxcv import checkpoint as checkpoint_lib
from jaxcv import config as config_lib
from jaxcv import tasks, train
from jaxcv.tasks.classification import ClassificationTask, cross_entropy

from conftest import REPO_ROOT


class DistillFromFrozenCopy(ClassificationTask):
  """Cross-entropy plus KL to a frozen copy of the initial model; the head is not trained."""

  def init_extra(self, rng, params, model_state):
    return {'teacher': params, 'teacher_state': model_state, 'updates': jnp.zeros((), jnp.int32)}

  def loss(self, params, model_state, extra, batch, rng):
    logits, new_state = self.model.apply({'params': params, **model_state}, batch['image'],
                                         train=True, mutable=['batch_stats'])
    teacher = self.model.apply({'params': extra['teacher'], **extra['teacher_state']},
                               batch['image'], train=False)
    kl = optax.kl_divergence(jax.nn.log_softmax(logits), jax.nn.softmax(teacher)).mean()
    loss = cross_entropy(logits, batch['label']).mean() + kl
    return loss, ({'loss': loss, 'kl': kl}, dict(new_state))

  def trainable_labels(self, params):
    return {k: jax.tree.map(lambda _: 'freeze' if k == 'head' else 'train', v)
            for k, v in params.items()}

  def after_update(self, state):
    return state.replace(extra={**state.extra, 'updates': state.extra['updates'] + 1})


def test_extra_state_frozen_parts_and_hooks(tmp_path, monkeypatch):
  monkeypatch.setitem(tasks.TASKS, 'distill_frozen_copy', DistillFromFrozenCopy)
  config = config_lib.load(str(REPO_ROOT / 'tests' / 'configs' / 'tiny.py') + ':model=resnet_tiny',
                           ['task=distill_frozen_copy', 'total_steps=6'])
  summary = train.run(config, str(tmp_path))
  raw, _ = checkpoint_lib.load_pretrained(str(tmp_path))
  params, teacher = raw['params'], raw['extra']['teacher']
  assert int(raw['extra']['updates']) == 6
  # The head was frozen: still the initial values, which the teacher copy holds.
  jax.tree.map(np.testing.assert_array_equal, params['head'], teacher['head'])
  # The rest trained away from the frozen teacher.
  changed = jax.tree.leaves(jax.tree.map(lambda a, b: not np.array_equal(a, b),
                                         {k: v for k, v in params.items() if k != 'head'},
                                         {k: v for k, v in teacher.items() if k != 'head'}))
  assert any(changed)
  assert 0.0 <= summary['test/accuracy'] <= 1.0
