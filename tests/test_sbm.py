"""SBM (docs/sbm.md): PolyMNIST from MNIST, the VP-SDE against its closed form, replacement
sampling, the coherence metric, and the runlocal table through the sweep on fake MNIST files."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxcv import sweep
from jaxcv.data import load_dataset
from jaxcv.errors import ConfigError, DatasetNotFoundError
from jaxcv.multimodal import evaluator, polymnist
from jaxcv.multimodal.sde import VPSDE, dsm_loss, noised_observation, pc_sample

from conftest import REPO_ROOT
from test_domain_generalization import fake_mnist

TABLE = str(REPO_ROOT / 'configs' / 'sbm' / 'table.py')


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
  monkeypatch.setenv('JAXCV_CACHE_DIR', str(tmp_path / 'cache'))


@pytest.fixture(scope='module')
def data_dir(tmp_path_factory):
  root = tmp_path_factory.mktemp('data')
  fake_mnist(root / 'mnist')
  return root


# ------------------------------------------------------------------ data

def test_polymnist_is_label_paired_and_deterministic(data_dir):
  name = 'polymnist(modalities=3,seed=1):mnist'
  a, b = (load_dataset(name, 'train', data_dir) for _ in range(2))
  mnist = load_dataset('mnist', 'train', data_dir)
  assert a.images.shape == (300, 28, 28, 9)
  np.testing.assert_array_equal(a.images, b.images)
  np.testing.assert_array_equal(a.labels, mnist.labels)
  other = load_dataset('polymnist(modalities=3,seed=2):mnist', 'train', data_dir)
  assert not np.array_equal(a.images, other.images)
  # Modality k alone, and inside the 5-modality tuple, is the same images.
  one = load_dataset('polymnist(modality=1,modalities=5,seed=1):mnist', 'train', data_dir)
  np.testing.assert_array_equal(one.images, a.images[..., 3:6])
  # The digit pixel of each tuple member comes from an MNIST image of the same label: the fake
  # files encode the image index in pixel [0, 0] / [0, 1] (below the binarising threshold, so
  # check the permutation itself).
  rng = np.random.default_rng(0)
  labels = np.asarray(mnist.labels)
  perm = polymnist.class_paired_permutation(labels, rng)
  np.testing.assert_array_equal(labels[perm], labels)
  assert not np.array_equal(perm, np.arange(len(labels)))
  # Digit pixels are the inverted background.
  digit = (load_dataset('mnist', 'train', data_dir).images[..., 0] > 128).any()
  assert digit


def test_polymnist_options_and_published_files(data_dir, tmp_path):
  with pytest.raises(ConfigError, match='modality=5'):
    load_dataset('polymnist(modality=5,modalities=5):mnist', 'train', data_dir)
  with pytest.raises(DatasetNotFoundError, match='m0'):
    polymnist.read_published(tmp_path, 'train')
  from PIL import Image
  data = load_dataset('polymnist(modalities=2,n=6):mnist', 'test', data_dir)
  for k, x in enumerate(polymnist.split_modalities(data.images, 2)):
    folder = tmp_path / 'PolyMNIST' / 'test' / f'm{k}'
    folder.mkdir(parents=True)
    for i, (image, label) in enumerate(zip(x, data.labels)):
      Image.fromarray(image).save(folder / f'{i}.{label}.png')
  read = load_dataset('polymnist_files(modalities=2)', 'test', tmp_path)
  np.testing.assert_array_equal(read.images, data.images)
  np.testing.assert_array_equal(read.labels, data.labels)


# ------------------------------------------------------------------ the SDE

def test_vp_marginals_match_the_closed_form_and_the_sde():
  sde = VPSDE(0.1, 20.0)
  t = jnp.linspace(0.01, 1.0, 7)
  a, sigma = sde.marginal(t)
  # Closed form: a_t = exp(-1/2 int_0^t beta), sigma_t^2 = 1 - a_t^2.
  integral = 0.1 * t + 0.5 * t ** 2 * (20.0 - 0.1)
  np.testing.assert_allclose(a, np.exp(-0.5 * integral), rtol=1e-6)
  np.testing.assert_allclose(sigma ** 2, 1 - np.exp(-integral), rtol=1e-5)
  # Simulating the forward SDE (fine Euler-Maruyama) reproduces the marginal's mean and std.
  x0, n, steps = 1.5, 20000, 400
  dt = 0.6 / steps

  def step(x, inputs):
    i, key = inputs
    f, g = sde.drift_diffusion(x, jnp.full((n,), i * dt))
    return x + f * dt + g * jnp.sqrt(dt) * jax.random.normal(key, x.shape), None
  x, _ = jax.lax.scan(step, jnp.full((n, 1), x0),
                      (jnp.arange(steps), jax.random.split(jax.random.key(0), steps)))
  a6, s6 = sde.marginal(jnp.float32(0.6))
  assert abs(float(x.mean()) - float(a6) * x0) < 0.02
  assert abs(float(x.std()) - float(s6)) < 0.02


def test_dsm_loss_is_minimised_by_the_true_noise_predictor():
  sde, x0 = VPSDE(1.0, 5.0), jnp.zeros((512, 3))  # x0 = 0: x_t = sigma eps, eps = x_t / sigma.
  perfect = dsm_loss(lambda x, t: -x / sde.marginal(t)[1][:, None], sde, x0, jax.random.key(1))
  wrong = dsm_loss(lambda x, t: jnp.zeros_like(x), sde, x0, jax.random.key(1))
  assert float(perfect) < 1e-8 and float(wrong) > 0.5


def test_gaussian_data_is_sampled_with_its_correlation():
  """With the exact score of correlated Gaussian data, PC sampling reproduces the data's
  correlation, and replacement conditioning gives the conditional mean."""
  sde, rho = VPSDE(0.1, 20.0), 0.9
  cov0 = jnp.array([[1.0, rho], [rho, 1.0]])

  def score(x, t):
    a, s = sde.marginal(t)
    cov = a[:, None, None] ** 2 * cov0 + s[:, None, None] ** 2 * jnp.eye(2)
    return -jnp.linalg.solve(cov, x[..., None])[..., 0]
  x = pc_sample(score, sde, jax.random.key(0), (2000, 2), num_steps=200)
  assert abs(float(jnp.corrcoef(x.T)[0, 1]) - rho) < 0.05
  z_obs = jnp.tile(jnp.array([[1.0, 0.0]]), (2000, 1))
  observed = jnp.array([True, False])
  y = pc_sample(score, sde, jax.random.key(1), (2000, 2), num_steps=200, observed=observed,
                z_obs=z_obs)
  np.testing.assert_array_equal(y[:, 0], 1.0)
  # E[x1 | x0 = 1] = rho; replacement conditioning is approximate (it under-shoots the
  # correlation), so only a clear pull towards it is asserted.
  assert 0.6 < float(y[:, 1].mean()) < 1.0
  assert float(y[:, 1].std()) < float(x[:, 1].std())


def test_noised_observation_fresh_noise_and_official_quirk():
  sde, z, t = VPSDE(1.0, 5.0), jnp.ones((4, 3)), jnp.full((4,), 0.5)
  a, s = sde.marginal(t)
  quirk = noised_observation(sde, z, t, jax.random.key(0), compat_official_noise_obs=True)
  np.testing.assert_allclose(quirk, (a + s)[:, None] * z, rtol=1e-6)
  fresh = noised_observation(sde, z, t, jax.random.key(0))
  assert float(jnp.std(fresh - a[:, None] * z)) > 0.3


# ------------------------------------------------------------------ metrics

def test_coherence_metrics():
  labels = np.array([1, 2, 3, 4])
  truth = np.stack([labels] * 3, 1)
  assert evaluator.coherence(truth, labels) == 1.0
  assert evaluator.all_agree(truth) == 1.0
  assert evaluator.coherence(np.array([1, 0, 3, 0]), labels) == 0.5
  assert evaluator.all_agree(np.array([[1, 1], [1, 2]])) == 0.5
  feats = np.random.default_rng(0).normal(size=(400, 4))
  assert evaluator.fid_proxy(feats, feats) < 1e-6
  assert evaluator.fid_proxy(feats, feats + 1.0) == pytest.approx(4.0, rel=0.05)


# ------------------------------------------------------------------ the table

def test_runlocal_table_through_the_sweep(data_dir, tmp_path, monkeypatch):
  monkeypatch.setenv('JAXCV_DATA_DIR', str(data_dir))
  spec = f'{TABLE}:runlocal,modalities=2'
  workdir = tmp_path / 'sbm'
  records = sweep.run_table(spec, str(workdir), overrides=[
      'progress_bar=false', 'plot=false', 'async_checkpointing=false'])
  assert {r['status'] for r in records} == {'ok'}, records
  summary = json.loads((workdir / 'sbm2_s0' / 'summary.json').read_text())
  for variant in ('pc', 'em', 'quirk', 'indep', 'energy1', 'energy100'):  # energy: ebm2's row.
    for k in range(1, 2):
      assert 0.0 <= summary[f'sbm/{variant}/coherence_k{k}'] <= 1.0
    assert np.isfinite(summary[f'sbm/{variant}/fid_proxy'])
  assert (workdir / 'sbm2_s0' / 'sbm' / 'samples_pc.png').is_file()
  assert (workdir / 'sbm_table.md').is_file() and (workdir / 'sbm_coherence.png').is_file()

  # All modalities observed: the sampler returns the encoded latents, so the decoded images
  # are the autoencoders' reconstructions (inputs up to decoder error), whatever the score.
  from jaxcv import inference
  run = inference.load_run(workdir / 'sbm2_s0')
  task = run.task
  data = load_dataset(run.config.data.name, 'test', data_dir)
  x = jnp.asarray(data.images[:8] / 255.0, jnp.float32)
  z = task.predict_fns()['encode'](run.variables, x)
  out = pc_sample(task.score_fn(run.variables), task.sde, jax.random.key(0), z.shape,
                  num_steps=3, observed=jnp.ones(z.shape[-1], bool), z_obs=z)
  np.testing.assert_allclose(out, z, atol=1e-6)
  images = task.decode(task.unstandardize(run.variables, out))
  for k, (got, ae) in enumerate(zip(images, task.encoders)):
    recon = ae.predict_fns['reconstruct'](ae.variables, x[..., 3 * k:3 * k + 3], )
    np.testing.assert_allclose(got, recon, atol=1e-4)
