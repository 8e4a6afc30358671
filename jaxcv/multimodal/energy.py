"""SBM's optional coherence guidance (spec 06, the "-C" / EBM variants of the TMLR version).

A time-conditioned energy E(z_i, z_j, t) over a pair of modality latents, low for latents of the
same tuple and high otherwise, trained by a logistic (NCE-style) loss:
  positives  the pair (i, j) of one tuple, both latents noised to a random t (the VP marginal)
  negatives  the same with z_j taken from another tuple of the batch (a random permutation),
             and pure N(0, I) pairs
At every sampling step one observed modality i and one generated modality j are drawn at random
and lambda * grad_{z_j} E(z_i, z_j, t) is subtracted from j's score, in the predictor and the
corrector alike (`pair_guidance`, passed to `sde.pc_sample(guidance=...)`).

The official energy network class is missing from the released code, so its architecture is
ours: the residual time-conditioned MLP of the score model over [z_i, z_j, onehot(i),
onehot(j)] (the other modalities' latents zeroed, so latent sizes may differ), one scalar out.
Also ours: with no observed modality (unconditional sampling) i is drawn among all modalities.

Task `sbm_energy` (stage 3): the same frozen encoders, latent standardisation and VP-SDE as
`sbm_score` (config.sbm), so its energy lives in the score model's sampling space; the sbm
evaluator checks that the two runs' standardisations agree.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxcv.multimodal.models import ScoreMLP, declare_latent_stats
from jaxcv.multimodal.sde import VPSDE
from jaxcv.multimodal.tasks import SBMScoreTask
from jaxcv.tasks import register


def modality_of_dim(latent_dims) -> np.ndarray:
  """[D] ints: the modality each dim of the flat latent belongs to (modality k owns
  latent_dims[k] consecutive dims)."""
  return np.repeat(np.arange(len(latent_dims)), latent_dims)


class PairEnergy(nn.Module):
  """E(x, t, i, j) -> [B]: the energy of modalities i and j ([B] ints) of flat latents x [B, D]
  (modality k owns latent_dims[k] consecutive dims)."""
  latent_dims: tuple
  hidden: int = 256
  depth: int = 2

  @nn.compact
  def __call__(self, x, t, i=None, j=None):
    m = len(self.latent_dims)
    declare_latent_stats(self, sum(self.latent_dims))
    i = jnp.zeros(x.shape[:1], jnp.int32) if i is None else i
    j = jnp.ones(x.shape[:1], jnp.int32) if j is None else j
    owner = jnp.asarray(modality_of_dim(self.latent_dims))[None]
    pair = jnp.concatenate([jnp.where(owner == i[:, None], x, 0.0),
                            jnp.where(owner == j[:, None], x, 0.0),
                            jax.nn.one_hot(i, m), jax.nn.one_hot(j, m)], -1)
    mlp = ScoreMLP(dim=pair.shape[-1], hidden=self.hidden, depth=self.depth, out_dim=1,
                   with_stats=False, name='mlp')
    return mlp(pair, t)[:, 0]


def nce_loss(energy_fn, sde: VPSDE, x0, latent_dims, rng, eps_train: float = 1e-5):
  """Logistic loss of E on (positive, shuffled, prior) pairs; x0 [B, D] clean latents.

  The logit of "same tuple" is -E: positives cost softplus(E), negatives softplus(-E); the two
  kinds of negative share the positives' weight. Returns (loss, metrics)."""
  b, m = x0.shape[0], len(latent_dims)
  k_i, k_j, k_t, k_perm, k_pos, k_neg, k_prior = jax.random.split(rng, 7)
  i = jax.random.randint(k_i, (b,), 0, m)
  j = (i + jax.random.randint(k_j, (b,), 1, m)) % m  # j != i.
  t = jax.random.uniform(k_t, (b,), minval=eps_train, maxval=1.0)
  a, sigma = sde.marginal(t)
  owner = jnp.asarray(modality_of_dim(latent_dims))[None]
  shuffled = jnp.where(owner == j[:, None], x0[jax.random.permutation(k_perm, b)], x0)

  def noised(x, key):
    return a[:, None] * x + sigma[:, None] * jax.random.normal(key, x.shape)
  e_pos = energy_fn(noised(x0, k_pos), t, i, j)
  e_shuffled = energy_fn(noised(shuffled, k_neg), t, i, j)
  e_prior = energy_fn(jax.random.normal(k_prior, x0.shape), t, i, j)
  loss = (jnp.mean(jax.nn.softplus(e_pos)) + 0.5 * jnp.mean(jax.nn.softplus(-e_shuffled)) +
          0.5 * jnp.mean(jax.nn.softplus(-e_prior)))
  metrics = {'nce': loss, 'pos_below_shuffled': jnp.mean(e_pos < e_shuffled),
             'energy_pos': jnp.mean(e_pos), 'energy_shuffled': jnp.mean(e_shuffled)}
  return loss, metrics


def pair_guidance(energy_fn, weight: float, latent_dims, observed):
  """guidance(x, t, key) -> -weight * grad_{z_j} E(z_i, z_j, t) on j's dims (zero elsewhere),
  for `pc_sample(guidance=...)`; i is a random observed modality and j a random generated one,
  the same pair for the whole batch at one step (the key decides). `observed`: [D] booleans
  (a modality is observed or not as a whole)."""
  m = len(latent_dims)
  owner = modality_of_dim(latent_dims)
  first_dim = np.cumsum([0] + list(latent_dims))[:-1]
  observed_modality = jnp.asarray(observed)[..., first_dim]
  if observed_modality.ndim != 1:
    raise ValueError('energy guidance needs one observed mask for the batch ([D] booleans)')
  never = jnp.full((m,), -jnp.inf)

  def guidance(x, t, key):
    key_i, key_j = jax.random.split(key)
    # Unconditional sampling (nothing observed): i is any modality.
    may_guide = jnp.where(observed_modality.any(), observed_modality, True)
    i = jax.random.categorical(key_i, jnp.where(may_guide, 0.0, never))
    generated = ~observed_modality & (jnp.arange(m) != i)
    j = jax.random.categorical(key_j, jnp.where(generated, 0.0, never))
    pair = [jnp.full(x.shape[:1], k) for k in (i, j)]
    grad = jax.grad(lambda y: jnp.sum(energy_fn(y, t, *pair)))(x)
    on_j = (jnp.asarray(owner) == j) & generated.any()  # No generated modality: no guidance.
    return jnp.where(on_j[None], -weight * grad, 0.0)
  return guidance


@register('sbm_energy')
class SBMEnergyTask(SBMScoreTask):
  """Stage 3 of SBM: the pairwise coherence energy over the frozen stage-1 latents (config.sbm
  as sbm_score: encoders, beta0, beta1, eps_train, hidden, depth)."""

  def build_model(self):
    return PairEnergy(latent_dims=tuple(self.latent_dims), hidden=self.options.hidden,
                      depth=self.options.depth)

  def loss(self, params, model_state, extra, batch, rng):
    del extra
    x0 = self.batch_latents(model_state, batch)
    energy = self.energy_fn({'params': params, **model_state})
    loss, metrics = nce_loss(energy, self.sde, x0, self.latent_dims, rng, self.options.eps_train)
    return loss, (metrics, model_state)

  def energy_fn(self, variables):
    """E(x, t, i, j) in the standardised latent space."""
    def energy(x, t, i, j):
      return self.model.apply(variables, x, t, i, j)
    return energy

  def score_fn(self, variables):
    raise TypeError('an sbm_energy run has no score model; pass it to the sbm evaluator as '
                    '`energy` of an sbm_score run')
