"""jaxcv.ood: OpenOOD's metrics, every detector's formula against a direct computation, the sign
rule on a synthetic Gaussian setup, GradNorm and ODIN against autodiff, the parsers, and the
one-call evaluation of a tiny trained run (feature pass, cache, tables, CLI)."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import special, stats
from sklearn import covariance, metrics as skm, neighbors

from jaxcv import config as config_lib
from jaxcv import train
from jaxcv.errors import ConfigError
from jaxcv.ood import FeatureSet, Head, build_detector, build_detectors, ood_metrics
from jaxcv.ood import evaluate as evaluate_lib
from jaxcv.ood import features as features_lib
from jaxcv.ood.detectors import DETECTORS, Detector, odin_scores, split_specs

from conftest import REPO_ROOT

# ------------------------------------------------------------------------------------ metrics


def fpr_at_tpr_brute_force(id_scores, ood_scores, tpr=0.95):
  """Sweep every threshold t on ID-ness: OOD is flagged when score <= t. The FPR (ID flagged) at
  the smallest t flagging at least `tpr` of the OOD set."""
  for t in np.sort(np.concatenate([id_scores, ood_scores])):
    if np.mean(ood_scores <= t) >= tpr:
      return 100 * np.mean(id_scores <= t)
  raise AssertionError('unreachable')


def test_metrics_perfect_reversed_and_identical():
  perfect = ood_metrics([3.0, 4.0, 5.0], [0.0, 1.0])
  assert perfect == {'auroc': 100.0, 'fpr95': 0.0, 'aupr_in': 100.0, 'aupr_out': 100.0}
  reversed_ = ood_metrics([0.0, 1.0], [3.0, 4.0, 5.0])
  assert reversed_['auroc'] == 0.0 and reversed_['fpr95'] == 100.0
  rng = np.random.default_rng(0)
  same = ood_metrics(rng.normal(size=20000), rng.normal(size=20000))
  assert abs(same['auroc'] - 50) < 1.5 and abs(same['fpr95'] - 95) < 1.5
  assert abs(same['aupr_in'] - 50) < 1.5 and abs(same['aupr_out'] - 50) < 1.5


def test_metrics_match_sklearn_and_a_threshold_sweep():
  rng = np.random.default_rng(1)
  id_scores, ood_scores = rng.normal(1.0, 1.0, 300), rng.normal(0.0, 1.5, 200)
  m = ood_metrics(id_scores, ood_scores)
  is_ood = np.r_[np.zeros(300), np.ones(200)]
  conf = np.r_[id_scores, ood_scores]
  assert m['auroc'] == pytest.approx(100 * skm.roc_auc_score(is_ood, -conf), abs=1e-9)
  assert m['fpr95'] == pytest.approx(fpr_at_tpr_brute_force(id_scores, ood_scores), abs=1e-9)
  # Trapezoidal AUPRs, as OpenOOD: close to (not equal to) sklearn's average precision.
  assert m['aupr_in'] == pytest.approx(100 * skm.average_precision_score(1 - is_ood, conf), abs=1)
  assert m['aupr_out'] == pytest.approx(100 * skm.average_precision_score(is_ood, -conf), abs=1)
  precision, recall, _ = skm.precision_recall_curve(is_ood, -conf)
  assert m['aupr_out'] == pytest.approx(100 * skm.auc(recall, precision), abs=1e-9)
  with pytest.raises(ValueError, match='non-finite'):
    ood_metrics([1.0, np.nan], [0.0])


# ---------------------------------------------------------------------------------- detectors

C, D = 5, 12


def random_sets(seed=0, n_train=200, n_test=40):
  """ReLU-like features, a random head and labels: tiny inputs for the formula checks."""
  rng = np.random.default_rng(seed)
  head = Head(rng.normal(size=(D, C)), rng.normal(size=C))
  def make(n, name):
    z = np.maximum(rng.normal(0.5, 1.0, (n, D)), 0)
    return FeatureSet(head(z), z, rng.integers(0, C, n), head, {}, name)
  return make(n_train, 'train'), make(n_test, 'test')


def softmax(f):
  return special.softmax(f, axis=-1)


def reference(spec, train_fs, test_fs):
  """Each detector computed directly from its definition (OpenOOD's code, transcribed)."""
  f, z, w, b = test_fs.logits, test_fs.features, test_fs.head.kernel.T, test_fs.head.bias
  ztr, ytr = train_fs.features, train_fs.labels
  if spec == 'msp':
    return softmax(f).max(1)
  if spec == 'maxlogit':
    return f.max(1)
  if spec == 'energy(temperature=2.0)':
    return 2 * np.log(np.sum(np.exp(f / 2), 1))
  if spec == 'entropy':
    return -stats.entropy(softmax(f), axis=1)
  if spec == 'doctor':
    g = np.sum(softmax(f) ** 2, 1)
    return -(1 - g) / g
  if spec == 'logit_norm':
    return np.sqrt(np.sum(f**2, 1))
  if spec == 'gradnorm':
    return np.abs(softmax(f) - 1 / C).sum(1) * np.abs(z).sum(1)
  if spec in ('mds', 'rmds'):
    means = [ztr[ytr == c].mean(0) for c in range(C)]
    prec = covariance.EmpiricalCovariance().fit(
        np.concatenate([ztr[ytr == c] - means[c] for c in range(C)])).precision_
    d = np.stack([np.einsum('nd,de,ne->n', z - m, prec, z - m) for m in means], 1)
    if spec == 'mds':
      return -d.min(1)
    whole = covariance.EmpiricalCovariance().fit(ztr)
    d0 = np.einsum('nd,de,ne->n', z - whole.location_, whole.precision_, z - whole.location_)
    return np.max(-d + d0[:, None], 1)
  if spec == 'vim(dim=6)':
    u = -np.linalg.pinv(w) @ b
    cov = covariance.EmpiricalCovariance(assume_centered=True).fit(ztr - u).covariance_
    eig_vals, eig_vecs = np.linalg.eig(cov)
    ns = eig_vecs.T[np.argsort(eig_vals * -1)[6:]].T
    alpha = train_fs.logits.max(1).mean() / np.linalg.norm((ztr - u) @ ns, axis=-1).mean()
    return special.logsumexp(f, 1) - alpha * np.linalg.norm((z - u) @ ns, axis=-1)
  if spec == 'knn(k=3)':
    unit = lambda x: x / np.linalg.norm(x, axis=1, keepdims=True)
    dist, _ = neighbors.NearestNeighbors(n_neighbors=3).fit(unit(ztr)).kneighbors(unit(z))
    return -dist[:, -1]
  if spec == 'react':
    clipped = np.minimum(z, np.percentile(ztr.flatten(), 90))  # Fitted on the set given.
    return special.logsumexp(clipped @ w.T + b, 1)
  if spec == 'dice':
    contrib = ztr.mean(0)[None, :] * w
    masked = w * (contrib > np.percentile(contrib, 90))
    return special.logsumexp(np.sum(z[:, None, :] * masked, 2) + b, 1)
  if spec.startswith(('ash', 'scale')):
    percentile = {'ash': 90, 'scale': 85}.get(spec, 65)
    k = D - int(np.round(D * percentile / 100.0))
    out = []
    for row in z:
      top = np.argsort(-row, kind='stable')[:k]
      pruned = np.zeros_like(row)
      pruned[top] = row[top]
      if spec == 'scale':
        out.append(row * np.exp(row.sum() / pruned.sum()))
      elif spec == "ash(percentile=65.0, variant='b')":
        pruned[top] = row.sum() / k
        out.append(pruned)
      else:
        out.append(pruned * np.exp(row.sum() / pruned.sum()))
    return special.logsumexp(np.stack(out) @ w.T + b, 1)
  if spec == 'klm':
    p_fit = softmax(train_fs.logits)
    pred = p_fit.argmax(1)
    templates = [p_fit[pred == c].mean(0) for c in np.unique(pred)]
    return -np.min([[stats.entropy(p, t) for t in templates] for p in softmax(f)], 1)
  raise KeyError(spec)


FORMULA_SPECS = ['msp', 'maxlogit', 'energy(temperature=2.0)', 'entropy', 'doctor', 'logit_norm',
                 'gradnorm',
                 'mds', 'rmds', 'vim(dim=6)', 'knn(k=3)', 'react', 'dice', 'ash',
                 "ash(percentile=65.0, variant='b')", 'scale', 'klm']


@pytest.mark.parametrize('spec', FORMULA_SPECS)
def test_detector_matches_its_formula(spec):
  train_fs, test_fs = random_sets()
  detector = build_detector(spec)
  assert detector.spec == spec
  scores = detector.fit(train_fs).score(test_fs)
  assert scores.dtype == np.float64 and scores.shape == (len(test_fs),)
  rtol = 1e-4 if spec.startswith('knn') else 1e-7  # KNN's matmul runs in float32.
  np.testing.assert_allclose(scores, reference(spec, train_fs, test_fs), rtol=rtol, atol=1e-6)


def test_knn_accelerator_path_matches_the_cpu_path(monkeypatch):
  train_fs, test_fs = random_sets()
  detector = build_detector('knn(k=3)').fit(train_fs)
  on_cpu = detector.score(test_fs)
  monkeypatch.setattr(jax, 'default_backend', lambda: 'gpu')  # Takes the jnp top_k path.
  np.testing.assert_allclose(detector.score(test_fs), on_cpu, rtol=1e-5, atol=1e-6)


def test_every_registered_detector_is_checked():
  # ODIN below; the multi-layer detectors (mds_all, gram) in test_broad.py; CADet, which embeds
  # views of images rather than scoring a FeatureSet, in test_cadet.py.
  names = {build_detector(s).name for s in FORMULA_SPECS} | {'odin', 'mds_all', 'gram', 'cadet'}
  assert names == set(DETECTORS)


def gaussian_setup(seed=0, n=600):
  """C = 4 classes of ReLU features: class c is bright on block c of dims 0..15, dims 16..31 are
  quiet; OOD is dim on dims 0..15 and lights up dims 16..31 a little (a smaller L1 norm than ID,
  as GradNorm assumes). The head reads the class blocks (logits = class evidence)."""
  rng = np.random.default_rng(seed)
  classes, dim = 4, 32
  means = np.zeros((classes, dim))
  for c in range(classes):
    means[c, 4 * c:4 * c + 4] = 3.0
  head = Head(means.T.copy(), np.zeros(classes))
  def id_set(name):
    y = rng.integers(0, classes, n)
    noise = rng.normal(0, 0.5, (n, dim)) * np.r_[np.ones(16), 0.2 * np.ones(16)]
    z = np.maximum(means[y] + noise, 0)
    return FeatureSet(head(z), z, y, head, {}, name)
  z_ood = np.maximum(rng.normal(0, 0.3, (n, dim)) + np.r_[np.zeros(16), 0.8 * np.ones(16)], 0)
  return id_set('train'), id_set('val'), id_set('test'), FeatureSet(head(z_ood), z_ood, None,
                                                                    head, {}, 'ood')


# Multi-layer detectors (mds_all, gram) need per-layer features: their checks are in test_broad.py;
# CADet scores images (test_cadet.py).
@pytest.mark.parametrize('spec', sorted(set(DETECTORS) - {'odin', 'mds_all', 'gram', 'cadet'}))
def test_sign_rule_far_ood_scores_low_and_same_distribution_is_chance(spec):
  train_fs, val_fs, test_fs, ood_fs = gaussian_setup()
  detector = build_detector(spec).fit(val_fs if build_detector(spec).fit_split == 'val'
                                      else train_fs)
  id_scores = detector.score(test_fs)
  assert ood_metrics(id_scores, detector.score(ood_fs))['auroc'] > 90
  assert abs(ood_metrics(id_scores, detector.score(val_fs))['auroc'] - 50) < 8


def test_gradnorm_closed_form_is_the_head_gradient_norm():
  train_fs, _ = random_sets(n_train=6)
  kernel, bias = jnp.asarray(train_fs.head.kernel), jnp.asarray(train_fs.head.bias)

  def kl_uniform_to_p(w, z):  # KL(u || softmax(z W + b)) up to its constant
    return -jnp.mean(jax.nn.log_softmax(z @ w + bias))

  grads = [jax.grad(kl_uniform_to_p)(kernel, jnp.asarray(z)) for z in train_fs.features]
  expected = np.array([float(jnp.abs(g).sum()) for g in grads])
  np.testing.assert_allclose(build_detector('gradnorm').score(train_fs), expected, rtol=1e-5)


def test_odin_on_a_linear_model_matches_the_hand_gradient():
  rng = np.random.default_rng(0)
  images = rng.uniform(0, 1, (6, 3, 3, 2)).astype(np.float32)
  a = rng.normal(size=(18, 4)).astype(np.float32)
  predict = lambda x: x.reshape(x.shape[0], -1) @ a
  t, eps = 10.0, 0.01
  flat = images.reshape(6, -1)
  p = softmax(flat @ a / t)
  # d/dx CE(xA / T, y) = A (p - onehot(y)) / T; only its sign matters (0 counts as +).
  grad = (p - np.eye(4)[p.argmax(1)]) @ a.T / t
  perturbed = flat - eps * np.where(grad >= 0, 1, -1)
  expected = softmax(perturbed @ a / t).max(1)
  detector = build_detector(f'odin(temperature={t}, noise={eps})')
  got = jax.jit(detector.image_score_fn(predict))(jnp.asarray(images))
  np.testing.assert_allclose(got, expected, rtol=1e-5)
  # noise 0 is the tempered MSP; and ODIN refuses a FeatureSet.
  np.testing.assert_allclose(odin_scores(predict, jnp.asarray(images), t, 0.0),
                             softmax(flat @ a / t).max(1), rtol=1e-5)
  with pytest.raises(ConfigError, match='input gradients'):
    detector.score(random_sets()[1])


def test_parse_errors_and_feature_set_checks():
  assert split_specs('msp, knn(k=5),ash(percentile=80, variant="b")') == [
      'msp', 'knn(k=5)', 'ash(percentile=80, variant="b")']
  assert [d.spec for d in build_detectors('msp,energy(temperature=2)')] == [
      'msp', 'energy(temperature=2.0)']
  assert isinstance(build_detector('knn'), Detector)
  assert evaluate_lib.split_datasets('mnist, synthetic:n=64,size=16@train,dtd10') == [
      'mnist', 'synthetic:n=64,size=16@train', 'dtd10']
  assert evaluate_lib.parse_dataset('dtd10') == ('dtd10', 'all')
  assert evaluate_lib.parse_dataset('mnist@train') == ('mnist', 'train')
  for bad, message in [('nope', 'unknown OOD detector'), ('energy(t=1)', 'no argument'),
                       ('knn(3)', 'keyword'), ('knn(k=0)', 'positive'),
                       ('react(percentile=120)', 'percentile'), ('ash(variant="x")', 'variant'),
                       ('msp|energy', "expected '\\(' or the end"), ('msp,energy(temperature=1),energy',
                                                       'twice')]:
    with pytest.raises(ConfigError, match=message):
      build_detectors(bad)
  train_fs, test_fs = random_sets()
  with pytest.raises(ConfigError, match='mismatched'):
    FeatureSet(train_fs.logits, test_fs.features)
  with pytest.raises(ConfigError, match='head expects'):
    FeatureSet(None, np.zeros((3, D + 1)), head=train_fs.head)
  with pytest.raises(ConfigError, match='needs head'):
    build_detector('vim').fit(FeatureSet(train_fs.logits, train_fs.features))
  with pytest.raises(ConfigError, match='needs labels'):
    build_detector('mds').fit(FeatureSet(train_fs.logits, train_fs.features))
  with pytest.raises(RuntimeError, match='fit'):
    build_detector('knn').score(test_fs)
  with pytest.raises(ConfigError, match='dim'):
    build_detector(f'vim(dim={D})').fit(train_fs)


# ------------------------------------------------------------------- feature pass, evaluation

ID_DATA = 'synthetic:n=512,size=8,classes=4'
# OOD: another generator's grey 12x12 images, resized to 8x8 RGB in the feature pass.
OOD_DATA = 'synthetic:n=96,size=12,channels=1,classes=3'


@pytest.fixture(scope='module')
def tiny_run(tmp_path_factory):
  workdir = tmp_path_factory.mktemp('ood_run')
  config = config_lib.load(str(REPO_ROOT / 'tests' / 'configs' / 'tiny.py'),
                           ['total_steps=30', f'data.name={ID_DATA}'])
  train.run(config, str(workdir), devices=jax.devices()[:1])
  return workdir


def test_prepare_images_resizes_and_converts_channels():
  grey = np.tile(np.arange(28, dtype=np.uint8)[None, :, None, None] * 9, (2, 1, 28, 1))
  out = features_lib.prepare_images(grey, (8, 8, 3))
  assert out.shape == (2, 8, 8, 3) and out.dtype == jnp.float32
  np.testing.assert_array_equal(out[..., 0], out[..., 2])
  assert 0 <= float(out.min()) and float(out.max()) <= 1
  rgb = features_lib.prepare_images(np.full((1, 4, 4, 3), 255, np.uint8), (4, 4, 1))
  np.testing.assert_allclose(rgb, 1.0, rtol=1e-6)
  with pytest.raises(ConfigError, match='channels'):
    features_lib.prepare_images(np.zeros((1, 4, 4, 2), np.uint8), (4, 4, 3))


def test_feature_pass_matches_the_model(tiny_run):
  classifier = features_lib.load_classifier(str(tiny_run))
  images = np.random.default_rng(0).integers(0, 256, (10, 8, 8, 3), dtype=np.uint8)
  fs = features_lib.extract(classifier, images, batch_size=4, layers=True)
  logits, feats = classifier.model.apply(classifier.variables, images / np.float32(255),
                                         train=False, return_features=True)
  np.testing.assert_allclose(fs.logits, logits, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(fs.features, feats, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(fs.head(fs.features), fs.logits, rtol=1e-4, atol=1e-4)
  assert sorted(fs.layers) == ['stage1', 'stage2'] and fs.layers['stage2'].shape == (10, 64)


def test_evaluate_end_to_end_with_cache_and_cli(tiny_run, tmp_path, capsys):
  detectors = ['msp', 'energy', 'mds', 'vim(dim=8)', 'knn(k=5)', 'react', 'klm', 'odin',
               'mds(layer="stage1")']
  kwargs = dict(id_val_examples=128, fit_examples=400, layers=True,
                cache=str(tmp_path / 'cache'))
  results = evaluate_lib.evaluate(str(tiny_run), ID_DATA, [OOD_DATA, 'synthetic:n=64@train'],
                                  detectors, out_dir=str(tmp_path / 'out'), **kwargs)
  assert results['splits']['id_train']['examples'] == 400
  assert results['splits']['id_val']['examples'] == 128
  assert results['splits']['id_test']['examples'] == 512 - 128
  assert results['ood_datasets'] == [OOD_DATA, 'synthetic:n=64@train']
  assert results['id_accuracy'] > 50
  assert list(results['detectors']) == [build_detector(s).spec for s in detectors]
  for spec, r in results['detectors'].items():
    assert set(r['ood']) == set(results['ood_datasets'])
    assert abs(r['id_val_vs_id_test']['auroc'] - 50) < 20, spec
    assert r['mean']['auroc'] == pytest.approx(np.mean([m['auroc'] for m in r['ood'].values()]))
  assert results['detectors']['react']['fit_split'] == 'val'
  assert results['detectors']['msp']['fit_split'] is None
  saved = json.loads((tmp_path / 'out' / 'ood_results.json').read_text())
  assert saved['detectors']['mds']['ood'] == results['detectors']['mds']['ood']
  table = (tmp_path / 'out' / 'ood_results.md').read_text()
  assert '## AUROC' in table and '| knn(k=5) |' in table and 'ID-val vs ID-test' in table
  scores = np.load(tmp_path / 'out' / 'ood_scores.npz')
  assert scores[f'msp|{OOD_DATA}'].shape == (96,)
  # Second call: every split's features come from the cache, with the same results.
  assert len(list((tmp_path / 'cache').glob('*.npz'))) == 5
  again = evaluate_lib.evaluate(str(tiny_run), ID_DATA, [OOD_DATA, 'synthetic:n=64@train'],
                                detectors, **kwargs)
  assert again['detectors'] == {k: {**v, 'seconds': again['detectors'][k]['seconds']}
                                for k, v in results['detectors'].items()}

  with pytest.raises(ConfigError, match='twice'):
    evaluate_lib.evaluate(str(tiny_run), ID_DATA, [OOD_DATA, OOD_DATA], 'msp', cache=False,
                          id_val_examples=128)

  # The CLI: a comma-separated OOD list whose dataset options contain commas; clear errors.
  def cli(ood, detectors, *extra):
    return evaluate_lib.main(['--checkpoint', str(tiny_run), '--ood', ood, '--detectors',
                              detectors, '--id_val_examples', '64', '--no_cache', '--data_dir',
                              str(tmp_path), *extra])

  assert cli(f'{OOD_DATA},dtd10', 'msp') == 2
  assert "dataset 'dtd10'" in capsys.readouterr().err
  assert cli(OOD_DATA, 'msp,nope') == 2
  assert 'unknown OOD detector' in capsys.readouterr().err
  assert cli(OOD_DATA, 'msp,energy(temperature=2)', '--out', str(tmp_path / 'cli')) == 0
  assert '| energy(temperature=2.0) |' in capsys.readouterr().out
  assert (tmp_path / 'cli' / 'ood' / 'ood_results.md').is_file()  # The evaluator's artefacts.
