"""SBM's optional coherence guidance (jaxcv/multimodal/energy.py): weight 0 is the unguided
sampler, a coherence energy pulls the generated modality towards the observed one, the NCE loss
prefers an energy that tells tuples apart, and the pair energy sees only its two modalities."""

import jax
import jax.numpy as jnp
import numpy as np

from jaxcv.multimodal.energy import PairEnergy, nce_loss, pair_guidance
from jaxcv.multimodal.sde import VPSDE, pc_sample

SDE = VPSDE(1.0, 5.0)
DIMS = (2, 2)  # Two modalities of two latent dims each.


def standard_normal_score(x, t):
  del t
  return -x  # N(0, I) data stays N(0, I) under the VP-SDE.


def pull_together(x, t, i, j):
  """A hand-made coherence energy: low when modality i's and j's latents agree."""
  del t
  owner = np.repeat(np.arange(len(DIMS)), DIMS)
  zi = jnp.where(owner == i[:, None], x, 0.0).reshape(x.shape[0], len(DIMS), -1).sum(1)
  zj = jnp.where(owner == j[:, None], x, 0.0).reshape(x.shape[0], len(DIMS), -1).sum(1)
  return 0.5 * jnp.sum(jnp.square(zi - zj), -1)


def sample(weight=None, n=512):
  observed = jnp.array([True, True, False, False])
  z_obs = jnp.tile(jnp.array([[2.0, -2.0, 0.0, 0.0]]), (n, 1))
  guidance = None if weight is None else pair_guidance(pull_together, weight, DIMS, observed)
  return pc_sample(standard_normal_score, SDE, jax.random.key(0), (n, 4), num_steps=40,
                   observed=observed, z_obs=z_obs, guidance=guidance)


def test_weight_zero_is_the_unguided_sampler_and_guidance_pulls_towards_the_observed():
  plain = sample()
  # Same random numbers, zero guidance: equal up to float rounding (XLA fuses the sum otherwise).
  np.testing.assert_allclose(sample(0.0), plain, atol=1e-5)
  # Independent modalities: unguided, the generated one ignores the observation (mean 0).
  np.testing.assert_allclose(plain[:, 2:].mean(0), 0.0, atol=0.15)
  means = [np.asarray(sample(w)[:, 2:].mean(0)) for w in (1.0, 4.0)]
  for mean in means:  # Pulled towards (2, -2), more with a larger weight.
    assert mean[0] > 0.5 and mean[1] < -0.5
  assert means[1][0] > means[0][0] and means[1][1] < means[0][1]
  np.testing.assert_array_equal(sample(4.0)[:, :2], jnp.array([[2.0, -2.0]] * 512))


def test_nce_loss_prefers_an_energy_that_tells_tuples_apart():
  d = 8
  x0 = jnp.tile(jax.random.normal(jax.random.key(0), (512, d)), (1, 2))  # z_0 = z_1.
  rng = jax.random.key(1)

  def aware(x, t, i, j, sign=1.0):
    # Half the squared gap of a pair is about d sigma_t^2 / 2 for positives (they differ by
    # noise only) and d / 2 for negatives: threshold halfway, low energy for positives.
    z, rows = x.reshape(x.shape[0], 2, d), jnp.arange(x.shape[0])
    gap = 0.5 * jnp.sum(jnp.square(z[rows, i] - z[rows, j]), -1)
    return sign * 0.25 * (gap - d / 2 * (1.0 + SDE.marginal(t)[1] ** 2))
  blind, _ = nce_loss(lambda x, t, i, j: jnp.zeros(x.shape[0]), SDE, x0, (d, d), rng)
  np.testing.assert_allclose(blind, 2 * np.log(2), rtol=1e-6)
  loss, metrics = nce_loss(aware, SDE, x0, (d, d), rng)
  wrong, _ = nce_loss(lambda *a: aware(*a, sign=-1.0), SDE, x0, (d, d), rng)
  assert float(loss) < float(blind) - 0.1 and float(wrong) > float(blind) + 0.1
  assert float(metrics['pos_below_shuffled']) > 0.65


def test_pair_energy_sees_only_modalities_i_and_j():
  model = PairEnergy(latent_dims=(2, 3, 2), hidden=16, depth=1)
  x, t = jax.random.normal(jax.random.key(0), (4, 7)), jnp.full((4,), 0.5)
  variables = model.init(jax.random.key(1), x, t)
  params = jax.tree_util.tree_map(  # The out layer starts at zero; make the energy non-trivial.
      lambda p: p + 0.1 * jax.random.normal(jax.random.key(2), p.shape), variables['params'])
  variables = {**variables, 'params': params}
  i, j = jnp.zeros(4, jnp.int32), jnp.full((4,), 2)
  grad = jax.grad(lambda y: model.apply(variables, y, t, i, j).sum())(x)
  np.testing.assert_array_equal(grad[:, 2:5], 0.0)
  assert float(jnp.abs(grad[:, :2]).min()) > 0 and float(jnp.abs(grad[:, 5:]).min()) > 0
  assert variables['latent_stats']['mean'].shape == (7,)
