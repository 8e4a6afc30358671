"""Convolution-based unlearnable datasets: the CUDA generator, VUDA/HUDA, derived dataset names
(poisoned and JPEG training sets, clean test split, cache) and the Θ proxies."""

import io

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from jaxcv.data import load_dataset
from jaxcv.errors import ConfigError
from jaxcv.unlearnable import coin as coin_lib
from jaxcv.unlearnable import convolution, operators

BASE = 'synthetic:n=48,size=8,classes=4'


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
  monkeypatch.setenv('JAXCV_CACHE_DIR', str(tmp_path / 'cache'))
  return tmp_path / 'cache'


def test_kernels_are_the_reference_draws():
  # The reference generator: seed NumPy's global generator, then per class draw (3, 1, 3, 3)
  # uniforms in [0, pb), keep channel 0 and set one random entry to 1.
  np.random.seed(7)
  expected = []
  for _ in range(5):
    w = np.random.uniform(low=0, high=0.3, size=(3, 1, 3, 3))
    w[0, 0, np.random.randint(3), np.random.randint(3)] = 1.0
    expected.append(w[0, 0])
  kernels = convolution.class_kernels(5, 'cuda', pb=0.3, seed=7)
  np.testing.assert_allclose(kernels, np.stack(expected), rtol=1e-7)
  assert np.all((kernels == 1.0).sum(axis=(1, 2)) == 1)
  assert np.all(kernels[kernels != 1.0] < 0.3)
  assert not np.array_equal(kernels, convolution.class_kernels(5, 'cuda', pb=0.3, seed=8))


@pytest.mark.parametrize('method,shape', [('cuda', (3, 3)), ('vuda', (3, 1)), ('huda', (1, 3))])
def test_kernel_shapes(method, shape):
  kernels = convolution.class_kernels(10, method, pb=0.3, seed=0)
  assert kernels.shape == (10, *shape)
  assert np.all((kernels == 1.0).sum(axis=(1, 2)) == 1)


def test_bad_generator_options_are_config_errors():
  with pytest.raises(ConfigError, match='unknown unlearnable method'):
    convolution.class_kernels(10, 'xuda')
  with pytest.raises(ConfigError, match='odd'):
    convolution.class_kernels(10, 'cuda', size=4)


def test_poison_matches_a_hand_computed_example():
  image = np.array([[0, 51, 102], [153, 204, 255], [0, 0, 0]], np.uint8)[None, :, :, None]
  images = np.concatenate([image, image])
  # Kernel 0: x[i, j] + 0.5 x[i, j+1]; kernel 1: its 1 in the corner: out[i, j] = x[i-1, j-1]
  # (cross-correlation, like PyTorch's Conv2d; a true convolution would shift the other way).
  kernels = np.zeros((2, 3, 3), np.float32)
  kernels[0, 1, 1], kernels[0, 1, 2] = 1.0, 0.5
  kernels[1, 0, 0] = 1.0
  out = np.asarray(convolution.poison_images(images, kernels))[..., 0]
  # Kernel 0: [[.1, .4, .4], [1.0, 1.3, 1.0], [0, 0, 0]] / 1.3 * 255, truncated.
  np.testing.assert_array_equal(out[0], [[19, 78, 78], [196, 255, 196], [0, 0, 0]])
  # Kernel 1: [[0, 0, 0], [0, 0, .2], [0, .6, .8]] / .8 * 255, truncated.
  np.testing.assert_array_equal(out[1], [[0, 0, 0], [0, 0, 63], [0, 191, 255]])


def _reference_poison(images, labels, kernels):
  """A direct float64 loop over pixels, channels and kernel taps."""
  x = images.astype(np.float64) / 255
  out = np.zeros_like(x)
  kh, kw = kernels.shape[1:]
  n, h, w, c = x.shape
  for i in range(n):
    padded = np.pad(x[i], ((kh // 2,) * 2, (kw // 2,) * 2, (0, 0)))
    for a in range(kh):
      for b in range(kw):
        out[i] += kernels[labels[i], a, b] * padded[a:a + h, b:b + w]
    out[i] /= out[i].max()
  return np.clip(out * 255, 0, 255).astype(np.uint8)


@pytest.mark.parametrize('method', ['cuda', 'vuda', 'huda'])
def test_poison_matches_a_reference_loop_and_chunks_do_not_matter(method):
  rng = np.random.default_rng(0)
  images = rng.integers(0, 256, (20, 9, 7, 3), dtype=np.uint8)
  labels = rng.integers(0, 4, 20)
  kernels = convolution.class_kernels(4, method, pb=0.3, seed=1)
  out = convolution.poison(images, labels, kernels)
  expected = _reference_poison(images, labels, kernels)
  diff = np.abs(out.astype(int) - expected)
  assert diff.max() <= 1 and (diff == 0).mean() > 0.99  # Float32 vs float64 at a truncation.
  np.testing.assert_array_equal(convolution.poison(images, labels, kernels, chunk=6), out)
  assert out.max() == 255 and not np.array_equal(out, images)


def test_derived_name_poisons_only_the_train_split_and_is_cached(private_cache):
  base_train = load_dataset(BASE, 'train')
  poisoned = load_dataset(f'cuda:{BASE}', 'train')
  kernels = convolution.class_kernels(4, 'cuda', 0.3, 0)
  np.testing.assert_array_equal(poisoned.images,
                                convolution.poison(base_train.images, base_train.labels, kernels))
  np.testing.assert_array_equal(poisoned.labels, base_train.labels)
  np.testing.assert_array_equal(load_dataset(f'cuda:{BASE}', 'test').images,
                                load_dataset(BASE, 'test').images)
  entries = list(private_cache.glob('cuda-train-*.npz'))
  assert len(entries) == 1
  again = load_dataset(f'unlearnable(method=cuda,pb=0.3,seed=0):{BASE}', 'train')
  np.testing.assert_array_equal(again.images, poisoned.images)
  assert list(private_cache.glob('cuda-train-*.npz')) == entries  # Same key: read, not rebuilt.
  other = load_dataset(f'vuda(pb=0.5,seed=3):{BASE}', 'train')
  np.testing.assert_array_equal(other.images, convolution.poison(
      base_train.images, base_train.labels, convolution.class_kernels(4, 'vuda', 0.5, 3)))


def test_bad_derived_options_are_config_errors():
  with pytest.raises(ConfigError, match='no argument'):
    load_dataset(f'cuda(strength=2):{BASE}', 'train')
  with pytest.raises(ConfigError, match='not a float'):
    load_dataset(f'cuda(pb=high):{BASE}', 'train')
  with pytest.raises(ConfigError, match='unknown unlearnable method'):
    load_dataset(f'unlearnable(method=xuda):{BASE}', 'train')


def test_jpeg_dataset_is_a_pillow_round_trip_of_the_poisoned_set():
  poisoned = load_dataset(f'cuda:{BASE}', 'train')
  compressed = load_dataset(f'jpeg(quality=10):cuda:{BASE}', 'train')
  for i in (0, 17):
    buffer = io.BytesIO()
    Image.fromarray(poisoned.images[i]).save(buffer, format='JPEG', quality=10)
    np.testing.assert_array_equal(compressed.images[i], np.asarray(Image.open(buffer)))
  assert not np.array_equal(compressed.images, poisoned.images)
  np.testing.assert_array_equal(load_dataset(f'jpeg(quality=10):cuda:{BASE}', 'test').images,
                                load_dataset(BASE, 'test').images)


def test_operators_are_the_matrices_of_the_maps():
  rng = np.random.default_rng(0)
  image = jnp.asarray(rng.random((1, 6, 6, 1)), jnp.float32)
  kernel = jnp.asarray(convolution.class_kernels(1, 'cuda', seed=2)[0])
  a = jax.jit(operators.convolution_operator, static_argnums=1)(kernel, 6)
  np.testing.assert_allclose(a @ image.ravel(),
                             np.ravel(convolution.convolve(image, kernel[None])), atol=1e-6)
  dy, dx = coin_lib.displacement_fields(jax.random.key(0), (1, 6, 6), 2.0)
  r = jax.jit(operators.coin_operator)(dy[0], dx[0])
  np.testing.assert_allclose(r @ image.ravel(),
                             np.ravel(coin_lib.bilinear_warp(image, dy, dx)), atol=1e-6)


def test_theta_metrics_on_known_operators():
  eye = np.eye(4, dtype=np.float32)
  theta = operators.theta_metrics([np.stack([eye, 3 * eye]), np.stack([eye, eye])])
  assert theta['theta_imi'] == pytest.approx(np.sqrt(4) / 2)  # ||I||_F for class 0, 0 for 1.
  assert theta['theta_imc'] == pytest.approx(1.0)  # 2I and I point the same way.
  assert theta['inter_class_distance'] == pytest.approx(2.0)  # ||2I - I||_F.


def test_coin_raises_both_thetas_of_cuda():
  kernels = convolution.class_kernels(4, 'cuda', seed=0)
  cuda = operators.unlearnable_theta(kernels, size=6, samples_per_class=4)
  coin = operators.unlearnable_theta(kernels, size=6, samples_per_class=4, alpha=2.0)
  assert cuda['theta_imi'] == pytest.approx(0.0, abs=1e-5)  # One matrix per class.
  assert coin['theta_imi'] > 0.5
  assert coin['theta_imc'] > cuda['theta_imc']


def test_grayscale_dataset_is_pillow_luma_and_leaves_the_test_split():
  base = load_dataset(f'cuda:{BASE}', 'train')
  grey = load_dataset(f'grayscale:cuda:{BASE}', 'train')
  for i in (0, 5):
    luma = np.asarray(Image.fromarray(base.images[i]).convert('L')).astype(int)
    assert np.abs(grey.images[i, ..., 0].astype(int) - luma).max() <= 1
    np.testing.assert_array_equal(grey.images[i, ..., 0], grey.images[i, ..., 1])
  np.testing.assert_array_equal(load_dataset(f'grayscale:{BASE}', 'test').images,
                                load_dataset(BASE, 'test').images)
