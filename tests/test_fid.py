"""FID/KID math against closed forms and brute force, streaming statistics, reference caching,
and the classifier-feature FID pipeline end to end (a tiny trained classifier, the 'generative'
evaluator with a fake sampler)."""

import json

import jax
import ml_collections
import numpy as np
import pytest

from jaxcv import config as config_lib
from jaxcv import parallel
from jaxcv import train
from jaxcv.data.registry import load_dataset
from jaxcv.diffusion import fid
from jaxcv.diffusion import fid_features
from jaxcv.errors import ConfigError, UserError
from jaxcv.evaluators.artefacts import Artefacts
from jaxcv.evaluators.generative import GenerativeEvaluator
from jaxcv.tasks import DataInfo

from conftest import REPO_ROOT


def random_rotation(rng, dim):
  q, r = np.linalg.qr(rng.normal(size=(dim, dim)))
  return q * np.sign(np.diag(r))


def test_frechet_distance_matches_closed_form_for_diagonal_and_rotated_gaussians():
  rng = np.random.default_rng(0)
  dim = 12
  mean1, mean2 = rng.normal(size=dim), rng.normal(size=dim)
  var1, var2 = rng.uniform(0.1, 3, dim), rng.uniform(0.1, 3, dim)
  # W2² between N(μ1, diag v1) and N(μ2, diag v2) = |μ1 − μ2|² + Σ (√v1 − √v2)².
  expected = np.sum((mean1 - mean2)**2) + np.sum((np.sqrt(var1) - np.sqrt(var2))**2)
  assert fid.frechet_distance(mean1, np.diag(var1), mean2, np.diag(var2)) == pytest.approx(
      expected, rel=1e-9)
  # Rotating both Gaussians by the same orthogonal matrix leaves the distance unchanged, but
  # makes the covariances dense.
  q = random_rotation(rng, dim)
  assert fid.frechet_distance(q @ mean1, q @ np.diag(var1) @ q.T, q @ mean2,
                              q @ np.diag(var2) @ q.T) == pytest.approx(expected, rel=1e-7)


def test_frechet_distance_of_identical_sets_is_zero_even_when_singular():
  rng = np.random.default_rng(1)
  features = rng.normal(size=(400, 16)) * rng.uniform(0.5, 2, 16) + 3.0
  stats = fid.stats_of(features, 'test')
  assert abs(fid.frechet_distance(stats.mean, stats.covariance, stats.mean,
                                  stats.covariance)) < 1e-6
  # Fewer samples than dimensions: rank-deficient covariances (pytorch-fid's eps path).
  few = fid.stats_of(rng.normal(size=(6, 32)), 'test')
  value = fid.frechet_distance(few.mean, few.covariance, few.mean, few.covariance)
  assert np.isfinite(value) and abs(value) < 1e-2
  other = fid.stats_of(rng.normal(size=(6, 32)) + 1.0, 'test')
  assert fid.frechet_distance(few.mean, few.covariance, other.mean, other.covariance) > 10


def test_streaming_statistics_equal_whole_batch_statistics():
  rng = np.random.default_rng(2)
  # A large common offset: the naive sum-of-squares formula would lose digits here.
  features = rng.normal(size=(1000, 24)) @ rng.normal(size=(24, 24)) + 1e4
  stats = fid.FeatureStats('test', keep=150)
  for chunk in np.split(features, [1, 7, 100, 333, 800]):
    stats.update(chunk.astype(np.float64))
  assert stats.count == 1000
  np.testing.assert_allclose(stats.mean, features.mean(0), rtol=1e-12)
  np.testing.assert_allclose(stats.covariance, np.cov(features, rowvar=False), rtol=1e-8,
                             atol=1e-8)
  np.testing.assert_array_equal(stats.features, features[:150].astype(np.float32))
  with pytest.raises(ValueError, match='dimensions'):
    stats.update(np.zeros((2, 5)))


def brute_force_mmd2(x, y):
  k = lambda a, b: (a @ b / len(a) + 1)**3
  m, n = len(x), len(y)
  xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
  yy = sum(k(y[i], y[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
  xy = sum(k(x[i], y[j]) for i in range(m) for j in range(n)) / (m * n)
  return xx + yy - 2 * xy


def test_polynomial_mmd_matches_brute_force():
  rng = np.random.default_rng(3)
  x, y = rng.normal(size=(7, 5)), rng.normal(size=(9, 5)) + 0.3
  assert fid.polynomial_mmd2_unbiased(x, y) == pytest.approx(brute_force_mmd2(x, y), rel=1e-10)


def test_kid_is_unbiased_for_same_distribution_and_positive_for_different():
  rng = np.random.default_rng(4)
  draws = 400
  unbiased, biased = [], []
  for _ in range(draws):
    x, y = rng.normal(size=(10, 8)), rng.normal(size=(10, 8))
    unbiased.append(fid.polynomial_mmd2_unbiased(x, y))
    kernel = lambda a, b: (a @ b.T / 8 + 1)**3
    biased.append(kernel(x, x).mean() + kernel(y, y).mean() - 2 * kernel(x, y).mean())
  stderr = np.std(unbiased) / np.sqrt(draws)
  assert abs(np.mean(unbiased)) < 4 * stderr
  # The test has power: keeping the diagonal (the biased V-statistic) is detectably positive.
  assert np.mean(biased) > 4 * np.std(biased) / np.sqrt(draws)

  a, b = rng.normal(size=(300, 8)), rng.normal(size=(300, 8)) + 0.5
  kid, kid_std = fid.kernel_inception_distance(a, b, num_subsets=20, subset_size=100, seed=0)
  assert kid > 5 * kid_std > 0
  assert fid.kernel_inception_distance(a, b, 20, 100, seed=0) == (kid, kid_std)
  same, _ = fid.kernel_inception_distance(a, rng.normal(size=(300, 8)), 20, 100)
  assert abs(same) < kid / 10


def test_compare_names_the_feature_space_and_refuses_mixing(tmp_path):
  rng = np.random.default_rng(5)
  real = fid.stats_of(rng.normal(size=(200, 4)), 'space-a').to_reference()
  real.save(tmp_path / 'ref.npz')
  loaded = fid.ReferenceStats.load(tmp_path / 'ref.npz')
  np.testing.assert_array_equal(loaded.covariance, real.covariance)
  assert (loaded.count, loaded.feature_space) == (200, 'space-a')
  result = fid.compare(fid.stats_of(rng.normal(size=(150, 4)) + 1, 'space-a'), loaded,
                       kid_subsets=5, kid_subset_size=50)
  assert result['feature_space'] == 'space-a'
  assert result['fid'] == pytest.approx(4.0, rel=0.3)  # |Δμ|² = 4, equal covariances.
  assert result['num_samples'] == 150 and result['num_reference'] == 200
  assert result['kid'] > 0
  with pytest.raises(UserError, match='different feature spaces'):
    fid.compare(fid.stats_of(rng.normal(size=(10, 4)), 'space-b'), loaded)


# ---------------------------------------------------------------- classifier feature space

DATA = 'synthetic:n=256,size=8,classes=4'


@pytest.fixture(scope='module')
def classifier_run(tmp_path_factory):
  """A tiny classifier trained for a few steps: the source of the proxy feature space."""
  workdir = tmp_path_factory.mktemp('classifier_run')
  config = config_lib.load(str(REPO_ROOT / 'tests' / 'configs' / 'tiny.py'),
                           ['total_steps=4', f'data.name={DATA}'])
  train.run(config, str(workdir), devices=jax.devices()[:1])
  return workdir


class FakeGenerativeTask:
  """'Samples' by returning real images (or noise): FID against the real data is ~0 (or not)."""

  def __init__(self, images, noise=False):
    self.info = DataInfo(num_classes=4, image_shape=images.shape[1:], num_train_examples=0)
    self._images = jax.numpy.asarray(images)
    self._noise = noise

  def predict_fns(self):
    def sample(variables, rng, labels, scale=1.0):
      del variables
      count = labels.shape[0]
      if self._noise:
        return jax.random.uniform(rng, (count, *self._images.shape[1:]))
      index = jax.random.choice(rng, self._images.shape[0], (count,), replace=False)
      return self._images[index].astype(jax.numpy.float32) / 255.0 * scale
    return {'sample': sample}


def test_classifier_feature_space_reference_cache_and_generative_evaluator(classifier_run,
                                                                          tmp_path):
  space = fid_features.build_feature_space(f'classifier:{classifier_run}')
  assert space.name == f'classifier:{classifier_run.name}'
  data = load_dataset(DATA, 'train')
  features = np.asarray(space(data.images[:5]))
  assert features.shape == (5, space.dim) and np.isfinite(features).all()

  cache = tmp_path / 'cache'
  reference = fid_features.reference_stats(space, DATA, 'train', cache_dir=str(cache),
                                           batch_size=100, keep=200)
  stored = list(cache.glob('*.npz'))
  assert len(stored) == 1 and reference.count == 256 and reference.feature_space == space.name
  again = fid_features.reference_stats(space, DATA, 'train', cache_dir=str(cache), keep=200)
  np.testing.assert_array_equal(again.covariance, reference.covariance)
  assert stored[0].stat().st_mtime_ns == list(cache.glob('*.npz'))[0].stat().st_mtime_ns
  # Streaming in batches gives the statistics of all features at once.
  whole = fid.stats_of(np.asarray(space(data.images)), space.name)
  np.testing.assert_allclose(reference.mean, whole.mean, rtol=1e-5, atol=1e-6)

  config = config_lib.base_config()
  config.data.name = DATA
  mesh = parallel.make_mesh(config.mesh, jax.devices())  # 8 devices: sharded sampling.
  eval_config = ml_collections.ConfigDict(dict(
      type='generative', feature_space=f'classifier:{classifier_run}', num_samples=200,
      batch_size=50, cache_dir=str(cache), keep=200, kid_subsets=10, kid_subset_size=100,
      sample_kwargs={'scale': 1.0}))
  real_like = dict(GenerativeEvaluator(eval_config, config, FakeGenerativeTask(data.images),
                                       mesh).run({}))
  noise = dict(GenerativeEvaluator(eval_config, config,
                                   FakeGenerativeTask(data.images, noise=True), mesh).run({}))
  key = f'fid[{space.name}]'
  assert set(real_like) == {key, f'kid[{space.name}]', f'kid_std[{space.name}]'}
  assert real_like[key] < 0.2 * noise[key]
  assert real_like[f'kid[{space.name}]'] < noise[f'kid[{space.name}]']


def test_generative_evaluator_errors(classifier_run):
  config = config_lib.base_config()
  config.data.name = DATA
  mesh = parallel.make_mesh(config.mesh, jax.devices()[:1])
  task = FakeGenerativeTask(np.zeros((4, 8, 8, 3), np.uint8))
  with pytest.raises(ConfigError, match='feature_space'):
    GenerativeEvaluator(ml_collections.ConfigDict(dict(type='generative')), config, task, mesh)
  with pytest.raises(ConfigError, match='no predict function'):
    GenerativeEvaluator(ml_collections.ConfigDict(dict(
        type='generative', feature_space=f'classifier:{classifier_run}', predict='nope')),
        config, task, mesh)
  with pytest.raises(ConfigError, match='expected'):
    fid_features.build_feature_space('pixels')


class FakeGridTask(FakeGenerativeTask):
  """Real images plus noise that shrinks with more steps and grows away from guidance 2: the
  grid's best FID must fall with the steps and pick guidance 2."""

  def predict_fns(self):
    def sample(variables, rng, labels, *, method='ddim', num_steps=50, guidance_scale=None,
               max_steps=None):
      del variables, method
      assert max_steps == 8  # The largest step count of the grid: one compiled sampler.
      index_rng, noise_rng = jax.random.split(rng)
      index = jax.random.choice(index_rng, self._images.shape[0], (labels.shape[0],),
                                replace=False)
      images = self._images[index].astype(jax.numpy.float32) / 255.0
      amount = 1.0 / num_steps + 0.3 * abs((guidance_scale or 0.0) - 2.0)
      noise = jax.random.uniform(noise_rng, images.shape)
      return (1 - amount) * images + amount * noise
    return {'sample': sample}


def test_generative_sampler_grid_metrics_and_artefacts(classifier_run, tmp_path):
  config = config_lib.base_config()
  config.data.name = DATA
  mesh = parallel.make_mesh(config.mesh, jax.devices()[:1])
  eval_config = ml_collections.ConfigDict(dict(
      type='generative', feature_space=f'classifier:{classifier_run}', num_samples=100,
      batch_size=100, cache_dir=str(tmp_path / 'cache'), keep=100, kid_subsets=5,
      kid_subset_size=50, sample_kwargs={'num_steps': 8, 'guidance_scale': 2.0, 'max_steps': 8},
      samplers='ddim(steps=(1,2,8)),ddpm(steps=8)', guidance=(1.0, 2.0, 3.0)))
  data = load_dataset(DATA, 'train')
  evaluator = GenerativeEvaluator(eval_config, config, FakeGridTask(data.images), mesh,
                                  artefacts=Artefacts(tmp_path / 'gen'))
  results = dict(evaluator.run({}))
  tag = evaluator.space.name
  assert f'fid[{tag}]' in results and f'ddim/2/w=3/fid[{tag}]' in results
  assert len([k for k in results if k.endswith(f'/fid[{tag}]')]) == 4 * 3
  best = [results[f'ddim/{s}/best_fid[{tag}]'] for s in (1, 2, 8)]
  assert best[0] > best[1] > best[2]
  assert {results[f'ddim/{s}/best_guidance'] for s in (1, 2, 8)} == {2.0}
  assert results[f'ddim/2/best_fid[{tag}]'] == min(results[f'ddim/2/w={w}/fid[{tag}]']
                                                   for w in (1, 2, 3))
  saved = json.loads((tmp_path / 'gen' / 'grid.json').read_text())
  assert len(saved['points']) == 12 and len(saved['best']) == 4
  assert '| ddpm | 8 |' in (tmp_path / 'gen' / 'grid.md').read_text()
  assert (tmp_path / 'gen' / 'grid.png').stat().st_size > 0
  with pytest.raises(ConfigError, match='unknown sampler'):
    GenerativeEvaluator(ml_collections.ConfigDict(dict(
        type='generative', feature_space=f'classifier:{classifier_run}', samplers='euler')),
        config, FakeGridTask(data.images), mesh)
