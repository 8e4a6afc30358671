"""BROAD (paper 4): the shift builders (CIFAR-10-C corruptions against NumPy/SciPy transcriptions
of make_cifar_c.py, mosaics, adversarial sets, as derived datasets), the multi-layer detectors
against NumPy references, the score ensembles against scikit-learn, the benchmark end to end on
a tiny run, and the table at `runlocal`."""

import io
import json

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage
from sklearn import covariance, metrics as skm
from sklearn.mixture import GaussianMixture

from jaxcv.data import registry
from jaxcv.errors import ConfigError
from jaxcv.ood import FeatureSet, Head, broad, build_detector
from jaxcv.ood import ensembles as ens_lib
from jaxcv.ood import features as features_lib
from jaxcv.ood.detectors.layers import deviation, gram_key, gram_row_sums
from jaxcv.ood.shifts import adversarial, corruptions, mosaic

from conftest import REPO_ROOT

BASE = 'synthetic:n=96,size=16,classes=4'


def images(n=6, size=16, seed=0):
  return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


# ------------------------------------------------------------------------------ corruptions

def test_contrast_and_noise_match_make_cifar_c():
  x = images()
  f = x / 255.0
  means = f.mean(axis=(1, 2), keepdims=True)
  expected = np.uint8(np.clip((f - means) * 0.15 + means, 0, 1) * 255)
  got = corruptions.corrupt(x, 'contrast', 5)
  assert np.abs(got.astype(int) - expected).max() <= 1  # float32 vs float64 at a floor.
  noisy = corruptions.corrupt(x, 'gaussian_noise', 3, seed=1)
  assert noisy.dtype == np.uint8 and noisy.shape == x.shape
  np.testing.assert_array_equal(noisy, corruptions.corrupt(x, 'gaussian_noise', 3, seed=1))
  assert not np.array_equal(noisy, corruptions.corrupt(x, 'gaussian_noise', 3, seed=2))
  mid = (x > 40) & (x < 215)  # Unclipped pixels: the residual is N(0, 0.08^2).
  residual = (noisy.astype(float) - x)[mid] / 255
  assert abs(residual.std() - 0.08) < 0.01


def test_defocus_blur_matches_opencv_semantics():
  radius, alias = corruptions.DEFOCUS_RADIUS_AND_ALIAS_BLUR[4]
  grid = np.arange(-8, 9)
  xx, yy = np.meshgrid(grid, grid)
  disk = (xx**2 + yy**2 <= radius**2).astype(float)
  disk /= disk.sum()
  taps = np.exp(-np.arange(-1, 2) ** 2 / (2 * alias**2))
  taps /= taps.sum()
  # scipy's 'mirror' border is OpenCV's BORDER_REFLECT_101 (cv2.GaussianBlur / filter2D).
  kernel = ndimage.correlate1d(ndimage.correlate1d(disk, taps, 0, mode='mirror'), taps, 1,
                               mode='mirror')
  np.testing.assert_allclose(corruptions.defocus_kernel(radius, alias), kernel, atol=1e-12)
  x = images(size=20)
  expected = np.stack([np.stack([ndimage.correlate(im[..., c] / 255.0, kernel, mode='mirror')
                                 for c in range(3)], -1) for im in x])
  expected = np.uint8(np.clip(expected, 0, 1) * 255)
  got = corruptions.corrupt(x, 'defocus_blur', 5)
  assert np.abs(got.astype(int) - expected).max() <= 1


def test_jpeg_is_pillow_at_the_severity_quality_and_bad_options_fail():
  x = images(2)
  buffer = io.BytesIO()
  Image.fromarray(x[0]).save(buffer, 'JPEG', quality=40)
  np.testing.assert_array_equal(corruptions.corrupt(x, 'jpeg', 5)[0],
                                np.asarray(Image.open(buffer)))
  with pytest.raises(ConfigError, match='severity'):
    corruptions.corrupt(x, 'contrast', 6)
  with pytest.raises(ConfigError, match='unknown corruption'):
    corruptions.corrupt(x, 'fog', 1)


# ---------------------------------------------------------------------------------- mosaics

def test_mosaics_mix_classes_or_keep_one_and_tile_2x2():
  labels = np.repeat(np.arange(4), 8)
  mixed = mosaic.mosaic_indices(labels, 50, True, seed=0)
  assert all(len(set(labels[row])) >= 2 for row in mixed)
  assert all(len(set(labels[row])) >= 3 for row in mosaic.mosaic_indices(labels, 20, True, 3))
  mono = mosaic.mosaic_indices(labels, 50, False, seed=0)
  assert all(len(set(labels[row])) == 1 for row in mono)
  # Constant images: each quadrant of the mosaic carries its image's value.
  x = np.stack([np.full((16, 16, 3), 7 * i, np.uint8) for i in range(32)])
  tiles, out_labels, index = mosaic.mosaics(x, labels, 5, mixed=True, seed=1)
  assert tiles.shape == (5, 16, 16, 3) and (out_labels == -1).all()
  np.testing.assert_array_equal(tiles[:, 3, 3, 0], 7 * index[:, 0])  # Top left.
  np.testing.assert_array_equal(tiles[:, 12, 12, 0], 7 * index[:, 3])  # Bottom right.
  _, mono_labels, mono_index = mosaic.mosaics(x, labels, 5, mixed=False, seed=1)
  np.testing.assert_array_equal(mono_labels, labels[mono_index[:, 0]])


def test_shifts_as_derived_datasets_nest_and_are_deterministic(tmp_path, monkeypatch):
  monkeypatch.setenv('JAXCV_CACHE_DIR', str(tmp_path))
  base = registry.load_dataset(BASE, 'test')
  c = registry.load_dataset(f'corrupt(kind=contrast,severity=5):{BASE}', 'test')
  np.testing.assert_array_equal(c.images, corruptions.corrupt(base.images, 'contrast', 5))
  again = registry.load_dataset(f'corrupt(kind=contrast,severity=5):{BASE}', 'test')  # Cached.
  np.testing.assert_array_equal(c.images, again.images)
  m = registry.load_dataset(f'mosaic(mixed=False,n=10,seed=3):{BASE}', 'test')
  assert len(m) == 10 and m.images.dtype == np.uint8 and (m.labels >= 0).all()
  nested = registry.load_dataset(f'corrupt(kind=jpeg,severity=3,n=8):mosaic(n=20):{BASE}', 'test')
  assert len(nested) == 8 and (nested.labels == -1).all()
  with pytest.raises(ConfigError, match='strength'):
    registry.load_dataset(f'corrupt(strength=3):{BASE}', 'test')
  with pytest.raises(ConfigError, match='run=PATH'):
    registry.load_dataset(f'adversarial:{BASE}', 'test')


# ------------------------------------------------------------------------- the table runlocal

@pytest.fixture(scope='module')
def table_dir(tmp_path_factory):
  """configs/broad/table.py at runlocal with one ID model: the transfer model, id_s0, broad_s0."""
  from jaxcv import sweep  # pylint: disable=import-outside-toplevel
  workdir = tmp_path_factory.mktemp('broad_table')
  records = sweep.run_table(f'{REPO_ROOT}/configs/broad/table.py:runlocal,seeds=1', str(workdir))
  assert {r['name']: r['status'] for r in records} == {
      'transfer': 'ok', 'id_s0': 'ok', 'broad_s0': 'ok'}
  return workdir


def test_synthetic_option_adds_a_generator_whose_samples_every_evaluation_uses(table_dir):
  from jaxcv import config as config_lib  # pylint: disable=import-outside-toplevel
  table = config_lib.load_module(f'{REPO_ROOT}/configs/broad/table.py').get_table
  assert 'generator' not in [r.name for r in table('cpu').rows]
  rows = {r.name: r for r in table('cpu,synthetic=1,seeds=2').rows}
  assert rows['generator'].config == 'configs/ldm_scaling/cifar10_unet.py'
  for seed in (0, 1):
    assert 'generator' in rows[f'broad_s{seed}'].depends_on
    run = table_dir / 'id_s0'
    config = config_lib.load('configs/broad/evaluate.py:' + rows[f'broad_s{seed}'].arg.format(
        id_s0=run, id_s1=run, transfer='', generator='/runs/gen'))
    assert config.evals.broad.synthetic == (
        'generated(run=/runs/gen,per_class=100,steps=20,seed=0):cifar10_sample',)


def test_table_runlocal_writes_the_broad_tables(table_dir):
  results = json.loads((table_dir / 'broad_s0' / 'broad' / broad.RESULTS_FILE).read_text())
  splits = results['splits']
  assert splits['pgd_white']['dtype'] == 'float32' and splits['pgd_transfer']['shift'] == \
      'adversarial'
  assert splits['mosaic']['shift'] == 'multiclass' and splits['mosaic_mono']['shift'] == 'control'
  assert splits['id_test']['examples'] == 192 and splits['contrast_s5']['examples'] == 48
  assert {'gmm', 'mean_z', 'max_z', 'msp', 'mds_all', 'gram(powers=2)'} <= set(results['auroc'])
  msp = results['auroc']['msp']
  assert set(msp['types']) == {'novel', 'adversarial', 'corruption', 'multiclass'}
  assert msp['overall'] == pytest.approx(np.mean(list(msp['types'].values())))
  assert results['attack_accuracy']['pgd_white'] < results['id_accuracy']
  summary = json.loads((table_dir / 'broad_s0' / 'summary.json').read_text())
  assert summary['broad/auroc/gmm/overall'] == pytest.approx(results['auroc']['gmm']['overall'])
  assert 'broad/pgd_white_uint8/auroc/msp' in summary
  text = (table_dir / 'broad_table.md').read_text()
  assert '| gmm |' in text and 'mosaic_mono' in text and '1 ID model (id_s0)' in text
  assert (table_dir / 'broad_auroc.png').stat().st_size > 1000
  assert '| broad |' in (table_dir / 'table.md').read_text()


def test_adversarial_sets_are_float_within_eps_and_stored_rounded(table_dir, tmp_path,
                                                                 monkeypatch):
  monkeypatch.setenv('JAXCV_CACHE_DIR', str(tmp_path))
  run = str(table_dir / 'transfer')
  classifier = features_lib.load_classifier(run)
  # The derived dataset stores the same attack rounded to uint8.
  derived = registry.load_dataset(f'adversarial(attack=fgsm,run={run},n=16,seed=0):'
                                  'cifar10_sample', 'test')
  base = registry.load_dataset('cifar10_sample', 'test')
  keep = np.sort(np.random.default_rng(0).permutation(len(base))[:16])
  np.testing.assert_array_equal(derived.labels, base.labels[keep])
  expected = adversarial.craft(classifier, base.images[keep], base.labels[keep],
                               adversarial.AttackSettings('fgsm'))
  assert expected.dtype == np.float32 and expected.shape == derived.images.shape
  assert adversarial.linf_distance(expected, base.images[keep]) <= 8 / 255 + 1e-6
  assert adversarial.linf_distance(expected, base.images[keep]) > 7 / 255
  np.testing.assert_array_equal(derived.images, adversarial.quantize(expected))
  assert np.abs(derived.images / 255.0 - expected).max() <= 0.5 / 255 + 1e-6


# ---------------------------------------------------------------------------- detectors

def gaussian_layers(seed=0, n=300, classes=3, shift=0.0):
  """Labelled two-layer features (pooled) for the Mahalanobis reference."""
  rng = np.random.default_rng(seed)
  labels = np.arange(n) % classes
  layers = {'stage1': rng.normal(size=(n, 4)) + labels[:, None] + shift,
            'stage2': rng.normal(size=(n, 6)) * 2 - labels[:, None] + shift}
  z = layers['stage2']
  head = Head(rng.normal(size=(6, classes)), np.zeros(classes))
  return FeatureSet(head(z), z, labels, head, layers, f'set{seed}')


def test_mds_all_is_the_sum_of_per_layer_mahalanobis_scores():
  train_fs, test_fs = gaussian_layers(0), gaussian_layers(1, n=50, shift=0.5)
  expected = np.zeros(50)
  for layer in ('stage1', 'stage2'):
    z, zt = train_fs.layers[layer], test_fs.layers[layer]
    means = np.stack([z[train_fs.labels == c].mean(0) for c in range(3)])
    cov = covariance.EmpiricalCovariance(assume_centered=False).fit(
        z - means[train_fs.labels])
    expected -= np.min([cov.mahalanobis(zt - m) for m in means], axis=0)
  detector = build_detector('mds_all').fit(train_fs)
  np.testing.assert_allclose(detector.score(test_fs), expected, rtol=1e-6)
  far = gaussian_layers(2, n=50, shift=5.0)
  assert detector.score(far).max() < np.median(detector.score(gaussian_layers(3, n=50)))


def test_gram_row_sums_match_the_explicit_gram_matrix():
  x = np.abs(np.random.default_rng(0).normal(size=(3, 5, 5, 4))).astype(np.float32)
  for p in (1, 2, 3):
    f = x.reshape(3, -1, 4).transpose(0, 2, 1) ** p  # [N, C, HW], OpenOOD's layout.
    g = (f @ f.transpose(0, 2, 1)).sum(2)
    expected = np.sign(g) * np.abs(g) ** (1 / p)
    np.testing.assert_allclose(np.asarray(gram_row_sums(x, p)), expected, rtol=1e-5)


def gram_reference(train_rows, train_labels, train_pred, test_rows, test_pred, holdout):
  """Sastry & Oore with a held-out normaliser, loops over examples: rows[layer] [N, P, C]."""
  n = len(train_labels)
  order = np.random.default_rng(0).permutation(n)
  cut = int(round(n * holdout))
  held, fit = order[:cut], order[cut:]
  def dev(rows, pred, layer, i):
    total = 0.0
    c = pred[i]
    members = [j for j in fit if train_labels[j] == c]
    for p in range(rows[layer].shape[1]):
      for ch in range(rows[layer].shape[2]):
        lo = min(train_rows[layer][j, p, ch] for j in members)
        hi = max(train_rows[layer][j, p, ch] for j in members)
        v = rows[layer][i, p, ch]
        total += max(lo - v, 0) / abs(lo + 1e-6) + max(v - hi, 0) / abs(hi + 1e-6)
    return total
  layers = sorted(train_rows)
  norm = {l: np.mean([dev(train_rows, train_pred, l, i) for i in held]) for l in layers}
  return np.array([-sum(dev(test_rows, test_pred, l, i) / (norm[l] or 1.0) for l in layers)
                   for i in range(len(test_pred))])


def test_gram_matches_a_loop_reference_and_flags_outliers():
  rng = np.random.default_rng(0)
  powers, classes = 2, 3
  def make(n, scale, name):
    maps = {'stage1': np.abs(rng.normal(size=(n, 4, 4, 3))) * scale,
            'stage2': np.abs(rng.normal(size=(n, 2, 2, 5))) * scale}
    layers = {gram_key(p, l): np.asarray(gram_row_sums(v.astype(np.float32), p))
              for l, v in maps.items() for p in range(1, powers + 1)}
    logits = rng.normal(size=(n, classes))
    return FeatureSet(logits, None, np.arange(n) % classes, None, layers, name)
  train_fs, test_fs, far_fs = make(60, 1.0, 'train'), make(12, 1.0, 'test'), make(12, 3.0, 'far')
  det = build_detector(f'gram(powers={powers}, holdout=0.25)').fit(train_fs)
  rows = lambda fs: {l: np.stack([fs.layers[gram_key(p, l)] for p in range(1, powers + 1)], 1).astype(float)
                     for l in ('stage1', 'stage2')}
  expected = gram_reference(rows(train_fs), train_fs.labels, train_fs.logits.argmax(-1),
                            rows(test_fs), test_fs.logits.argmax(-1), 0.25)
  np.testing.assert_allclose(det.score(test_fs), expected, rtol=1e-8)
  assert det.score(far_fs).mean() < det.score(test_fs).mean()
  assert deviation(np.array([0.5, 3.0]), np.array([1.0, 1.0]), np.array([2.0, 2.0])) == \
      pytest.approx(0.5 + 0.5, rel=1e-5)
  with pytest.raises(ConfigError, match='Gram statistics'):
    det.score(gaussian_layers(0))


def test_logit_norm():
  fs = FeatureSet(np.array([[3.0, 4.0], [0.0, 1.0]]), name='x')
  np.testing.assert_allclose(build_detector('logit_norm').score(fs), [5.0, 1.0])


# ---------------------------------------------------------------------------- ensembles

def test_gmm_ensemble_is_sklearn_with_bic_selected_components():
  rng = np.random.default_rng(0)
  # ID scores from two clusters; columns with different scales.
  fit = np.concatenate([rng.normal([0, 0, 0], 1, (200, 3)), rng.normal([5, 5, -5], 1, (200, 3))])
  fit = fit * [1.0, 10.0, 0.1] + [0.0, 100.0, 3.0]
  test = rng.normal(size=(30, 3)) * [1.0, 10.0, 0.1] + [2.0, 120.0, 3.0]
  gmm = ens_lib.GMM((1, 2, 3, 5), seed=0).fit(fit)
  z = lambda x: (x - fit.mean(0)) / fit.std(0)
  bics = {k: GaussianMixture(k, random_state=0).fit(z(fit)).bic(z(fit)) for k in (1, 2, 3, 5)}
  assert gmm.n_components == min(bics, key=bics.get) == 2
  reference = GaussianMixture(2, random_state=0).fit(z(fit))
  np.testing.assert_allclose(gmm.score(test), reference.score_samples(z(test)), rtol=1e-10)
  np.testing.assert_allclose(ens_lib.MeanZ().fit(fit).score(test), z(test).mean(1))
  np.testing.assert_allclose(ens_lib.MaxZ().fit(fit).score(test), z(test).min(1))


def test_gmm_catches_a_joint_pattern_that_averaging_misses():
  """ID: two correlated scores; OOD: each marginal typical, the pair anti-correlated."""
  rng = np.random.default_rng(1)
  cov_id = [[1.0, 0.95], [0.95, 1.0]]
  fit, id_test = rng.multivariate_normal([0, 0], cov_id, 500), rng.multivariate_normal([0, 0], cov_id, 500)
  ood = rng.multivariate_normal([0, 0], [[1.0, -0.95], [-0.95, 1.0]], 500)
  auroc = lambda e: 100 * skm.roc_auc_score(np.r_[np.zeros(500), np.ones(500)],
                                            -np.r_[e.score(id_test), e.score(ood)])
  assert auroc(ens_lib.GMM((1, 2, 3), seed=0).fit(fit)) > 80
  assert abs(auroc(ens_lib.MeanZ().fit(fit)) - 50) < 10
  with pytest.raises(ConfigError, match='non-finite'):
    ens_lib.MeanZ().fit(np.array([[np.inf, 0.0]]))
