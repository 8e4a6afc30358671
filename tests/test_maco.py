"""jaxcv.featviz (paper 5, MACO): the MACO image keeps its magnitude, Lucid's Fourier constants
against a transcription, the irfft round trip, optimisation raises the target, determinism per
seed, the metrics, and the table at runlocal through the sweep (evaluator, artefacts, render)."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxcv.errors import ConfigError
from jaxcv.featviz import metrics, objectives, optimize, spectrum, transforms
from jaxcv.featviz import parameterizations as params_lib
from jaxcv.models import build_model

from conftest import REPO_ROOT

H = W = 16
SCHEDULE = transforms.CropSchedule(num_crops=2, crop_scale=(0.9, 0.6), min_scale=0.5,
                                   noise=0.02, jitter=1.0)


@pytest.fixture(scope='module')
def tiny_model():
  model = build_model('small_cnn', 4, width=4)
  variables = model.init(jax.random.PRNGKey(0), jnp.zeros((1, H, W, 3)))
  return model, variables


def _decorrelated_pre_sigmoid(images):
  """Inverts MACO's last steps: logit, then back to the decorrelated colour basis."""
  x = jnp.log(images) - jnp.log1p(-images)
  return np.asarray(spectrum.decorrelate(x), np.float64)


def _assert_magnitude_is(images, magnitude):
  """|rfft2| of the standardised image is the target magnitude up to one scale (the global
  standardisation), on every coefficient irfft2 keeps as given (not DC, not the columns whose
  Hermitian symmetry irfft2 imposes)."""
  x = np.moveaxis(_decorrelated_pre_sigmoid(images), -1, 1)  # [T, 3, H, W]
  observed = np.abs(np.fft.rfft2(x))[..., 1:-1]
  for obs in observed:
    ratio = obs / magnitude[..., 1:-1]
    np.testing.assert_allclose(ratio, np.median(ratio), rtol=2e-3)


def test_maco_magnitude_stays_fixed_and_equals_the_target(tiny_model):
  rng = np.random.default_rng(0)
  magnitude = spectrum.compute_magnitude(rng.random((8, H, W, 3)).astype(np.float32))
  magnitude = magnitude * (1 + rng.random(magnitude.shape)).astype(np.float32)  # Any shape.
  param = params_lib.build('maco', H, W, magnitude=magnitude)
  initial = param.render_batch(param.init_batch(jax.random.PRNGKey(1), 2))
  _assert_magnitude_is(initial, magnitude)
  model, variables = tiny_model
  vis = optimize.visualize(objectives.classifier_forward(model, variables), param,
                           objectives.parse('logit'), [0, 1], steps=5, schedule=SCHEDULE,
                           input_size=(H, W))
  assert jax.tree.leaves(vis.params)[0].shape == (2, 3, H, W // 2 + 1)  # Only the phase learns.
  assert len(jax.tree.leaves(vis.params)) == 1
  _assert_magnitude_is(vis.images, magnitude)
  assert not np.allclose(vis.images, initial, atol=1e-3)  # The phase did move.


def test_magnitude_is_computed_in_the_decorrelated_basis():
  images = np.random.default_rng(1).random((5, 8, 8, 3)).astype(np.float32)
  expected = np.mean(np.abs(np.fft.rfft2(
      np.moveaxis(images @ np.linalg.inv(spectrum.COLOR_CORRELATION), -1, 1))), axis=0)
  np.testing.assert_allclose(spectrum.compute_magnitude(images, batch_size=2), expected,
                             rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(spectrum.compute_magnitude((images * 255).astype(np.uint8)),
                             spectrum.compute_magnitude(
                                 (images * 255).astype(np.uint8).astype(np.float32) / 255),
                             rtol=1e-5)
  # Lucid's matrix normalised by its largest column norm, transposed as Xplique stores it.
  lucid = np.array([[0.26, 0.09, 0.02], [0.27, 0.00, -0.05], [0.27, -0.09, 0.03]])
  lucid = lucid / np.max(np.linalg.norm(lucid, axis=0))
  np.testing.assert_allclose(spectrum.COLOR_CORRELATION, lucid.T, atol=1e-5)


@pytest.mark.parametrize('height,width', [(16, 16), (12, 10)])
def test_fourier_constants_and_irfft_round_trip(height, width):
  # Lucid's rfft2d_freqs and fft_image scale, transcribed.
  fy = np.fft.fftfreq(height)[:, None]
  fx = np.fft.fftfreq(width)[:width // 2 + 1]
  lucid_scale = (1.0 / np.maximum(np.sqrt(fx * fx + fy * fy), 1.0 / max(height, width))
                 * np.sqrt(width * height))
  np.testing.assert_allclose(params_lib.fourier_scale(height, width, 1.0), lucid_scale, rtol=1e-6)
  # Coefficients of a real image's spectrum (divided by the scale) render that image.
  x = np.random.default_rng(2).normal(size=(3, height, width))
  spec = np.fft.rfft2(x) / lucid_scale
  param = params_lib.build('fourier', height, width)
  image = param.render(jnp.asarray(np.stack([spec.real, spec.imag]), jnp.float32))
  expected = 1 / (1 + np.exp(-(np.moveaxis(x, 0, -1) / 4) @ spectrum.COLOR_CORRELATION))
  np.testing.assert_allclose(image, expected, atol=1e-5)
  np.testing.assert_allclose(np.fft.irfft2(np.fft.rfft2(x), s=(height, width)), x, atol=1e-12)


def test_pixel_and_ablation_render_in_range_and_learn_what_they_should():
  pixel = params_lib.build('pixel', H, W)
  p = pixel.init(jax.random.PRNGKey(0))
  assert p.shape == (H, W, 3) and float(jnp.std(p)) < 0.02  # Lucid's N(0, 0.01).
  np.testing.assert_allclose(pixel.render(p), jax.nn.sigmoid(spectrum.recorrelate(p)))
  ablation = params_lib.build('mag_phase', H, W)
  q = ablation.init(jax.random.PRNGKey(0))
  assert set(q) == {'magnitude', 'phase'} and bool(jnp.all(q['magnitude'] == 1))  # Flat start.
  image = ablation.render(q)
  assert image.shape == (H, W, 3) and float(image.min()) > 0 and float(image.max()) < 1
  with pytest.raises(ConfigError, match='magnitude'):
    params_lib.build('maco', H, W)
  with pytest.raises(ConfigError, match='unknown'):
    params_lib.build('lucid', H, W)


@pytest.mark.parametrize('name', ['maco', 'fourier'])
def test_optimisation_raises_the_target_logit(tiny_model, name):
  model, variables = tiny_model
  forward = objectives.classifier_forward(model, variables, with_intermediates=False)
  magnitude = np.ones(spectrum.spectrum_shape(H, W), np.float32) / (
      1 + spectrum.rfft2_freqs(H, W) * H)
  param = params_lib.build(name, H, W, magnitude=magnitude)
  targets = np.array([0, 1, 2, 3])
  initial = param.render_batch(param.init_batch(jax.random.split(jax.random.PRNGKey(0))[0], 4))
  vis = optimize.visualize(forward, param, objectives.parse('logit'), targets, steps=15,
                           schedule=SCHEDULE, input_size=(H, W), seed=0)
  before = np.asarray(forward(initial)[0])[np.arange(4), targets]
  after = np.asarray(forward(jnp.asarray(vis.images))[0])[np.arange(4), targets]
  assert np.all(after > before), (before, after)
  assert vis.trace.shape == (15, 4) and vis.trace[-3:].mean() > vis.trace[:3].mean()
  assert vis.alpha.shape == (4, H, W) and np.all(vis.alpha >= 0) and np.all(vis.alpha.sum((1, 2)) > 0)
  shown = optimize.display_alpha(vis.alpha)
  assert shown.min() >= 0 and np.allclose(shown.max((1, 2)), 1)


def test_determinism_per_seed(tiny_model):
  model, variables = tiny_model
  forward = objectives.classifier_forward(model, variables)
  run = optimize.build_visualize(forward, params_lib.build('pixel', H, W),
                                 objectives.parse('channel:stage2'), steps=3, schedule=SCHEDULE,
                                 input_size=(H, W))
  targets = jnp.array([0, 3])
  a, b, c = (jax.device_get(run(targets, jax.random.PRNGKey(seed))) for seed in (0, 0, 1))
  np.testing.assert_array_equal(a[0], b[0])  # Images.
  np.testing.assert_array_equal(a[1], b[1])  # Alpha maps.
  assert not np.allclose(a[0], c[0])


def test_objectives_read_sown_layers_and_reject_mistakes(tiny_model):
  model, variables = tiny_model
  forward = objectives.classifier_forward(model, variables)
  x = jax.random.uniform(jax.random.PRNGKey(0), (2, H, W, 3))
  logits, inter = forward(x)
  act = inter['stage2']  # [2, 4, 4, 8]
  targets = jnp.array([1, 5])
  np.testing.assert_allclose(objectives.parse('channel:stage2')(logits, inter, targets),
                             act.mean((1, 2))[jnp.arange(2), targets], rtol=1e-6)
  np.testing.assert_allclose(objectives.parse('neuron:stage2')(logits, inter, targets),
                             act[:, 2, 2][jnp.arange(2), targets], rtol=1e-6)
  direction = jnp.ones((2, act.shape[-1]))
  np.testing.assert_allclose(objectives.parse('direction:stage2')(logits, inter, direction),
                             act.mean((1, 2)).sum(-1), rtol=1e-5)
  tokens = jnp.arange(2 * 17 * 3, dtype=jnp.float32).reshape(2, 17, 3)  # class token + 4x4.
  assert float(objectives.parse('neuron:t')(logits, {'t': tokens}, jnp.array([0, 0]))[0]) == \
      float(tokens[0, 1 + 2 * 4 + 2, 0])
  with pytest.raises(ConfigError, match='sows no layer'):
    objectives.parse('channel:stage9')(logits, inter, targets)
  with pytest.raises(ConfigError, match='needs a layer'):
    objectives.parse('channel')
  with pytest.raises(ConfigError, match='target vectors'):
    optimize.visualize(forward, params_lib.build('pixel', H, W), objectives.parse('cosine:stage2'),
                       [0, 1], steps=1, input_size=(H, W))


def test_crops_stay_inside_and_follow_the_schedule():
  schedule = transforms.CropSchedule(num_crops=500, crop_scale=(0.8, 0.3), scale_std=0.05,
                                     min_scale=0.1)
  early, _ = transforms.crop_boxes(jax.random.PRNGKey(0), schedule, 0.0)
  late, _ = transforms.crop_boxes(jax.random.PRNGKey(0), schedule, 1.0)
  assert abs(float(early[:, 2].mean()) - 0.8) < 0.02 and abs(float(late[:, 2].mean()) - 0.3) < 0.02
  # A full-canvas crop without noise is the image itself.
  image = jax.random.uniform(jax.random.PRNGKey(1), (H, W, 3))
  crop = transforms.crop_and_resize(image, jnp.array([0.5, 0.5, 1.0]), jnp.zeros(2), (H, W), 0.0)
  np.testing.assert_allclose(crop, image, atol=1e-5)


def test_metrics():
  logits = np.array([[2.0, 0.0], [0.0, 1.0], [3.0, 0.0]])
  scores = metrics.target_scores(logits, np.array([0, 1, 1]))
  assert scores['logit'] == pytest.approx(1.0)
  assert scores['prob'] == pytest.approx(np.mean([1 / (1 + np.exp(-2)), 1 / (1 + np.exp(-1)),
                                                  1 / (1 + np.exp(3))]))
  assert metrics.top1_agreement(logits, np.array([0, 1, 1])) == pytest.approx(2 / 3)
  means = metrics.class_means(np.array([[1.0, 0], [3, 0], [0, 2]]), np.array([0, 0, 1]), 2)
  np.testing.assert_allclose(means, [[2, 0], [0, 2]])
  assert metrics.plausibility(np.array([[1.0, 1.0], [0, 5]]), np.array([0, 1]), means) == \
      pytest.approx((np.sqrt(0.5) + 1) / 2)
  # Spectra: white noise has excess high-frequency power against smooth images.
  rng = np.random.default_rng(0)
  smooth = np.cumsum(np.cumsum(rng.normal(size=(20, 16, 16, 3)), 1), 2)
  smooth = (smooth - smooth.min()) / (smooth.max() - smooth.min())
  power = spectrum.radial_power_spectrum(smooth)
  same = metrics.spectrum_metrics(smooth, power)
  assert same['spectrum_dist'] == pytest.approx(0, abs=1e-9)
  assert same['hf_ratio'] == pytest.approx(1)
  noisy = metrics.spectrum_metrics(rng.random((20, 16, 16, 3)), power)
  assert noisy['hf_ratio'] > 3 and noisy['spectrum_dist'] > 0.3


# ------------------------------------------------------------------------- the table runlocal

def test_table_runlocal_visualises_measures_and_renders(tmp_path):
  from jaxcv import sweep  # pylint: disable=import-outside-toplevel
  records = sweep.run_table(f'{REPO_ROOT}/configs/maco/table.py:runlocal', str(tmp_path),
                            rows=['fv_vit'])
  assert {r['name']: r['status'] for r in records} == {
      'judge': 'ok', 'resnet_s0': 'ok', 'resnet_s1': 'ok', 'vit': 'ok', 'fv_vit': 'ok'}
  summary = json.loads((tmp_path / 'fv_vit' / 'summary.json').read_text())
  for name in params_lib.PARAMETERIZATIONS:
    for metric in ('logit', 'prob', 'transfer', 'plausibility', 'fid_proxy', 'spectrum_dist'):
      assert np.isfinite(summary[f'featviz/{name}/{metric}']), (name, metric)
  out = tmp_path / 'fv_vit' / 'featviz'
  for name in ('grid.png', 'alpha.png', 'spectra.png', 'magnitude.npy'):
    assert (out / name).stat().st_size > 0
  stored = json.loads((out / 'featviz.json').read_text())
  assert stored['targets'] == [0, 1, 2] and len(stored['transfer_models']) == 2
  lines = (tmp_path / 'maco_table.md').read_text().splitlines()
  assert sum(line.startswith('| MACO |') for line in lines) == 1  # Mean over models.
  assert sum(line.startswith('| fv_vit | MACO |') for line in lines) == 1  # Per model.
  assert (tmp_path / 'maco_spectra.png').exists() and (tmp_path / 'table.md').exists()
  # The stored magnitude is the one MACO used: reusing it as a file is accepted.
  from jaxcv.evaluators import featviz  # pylint: disable=import-outside-toplevel
  config = featviz.evaluation_config(str(tmp_path / 'vit'), magnitude=str(out / 'magnitude.npy'))
  assert config.total_steps == 0 and config.evals.featviz.type == 'featviz'
  with pytest.raises(ConfigError, match='unknown featviz'):
    featviz.evaluation_config(str(tmp_path / 'vit'), colour='red')
