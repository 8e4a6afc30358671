"""DomainBed's protocol: in/out splits, RotatedMNIST / ColoredMNIST, per-domain balanced batches,
the 'domains' evaluator, model selection over runs, and one tiny end-to-end run. Everything runs on
data made in tmp_path; the real MNIST / PACS are used only by the tests that say so."""

import hashlib
import json
import struct
import types

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
import scipy.ndimage
from PIL import Image

from jaxcv import config as config_lib
from jaxcv import parallel, train
from jaxcv.data import build_train_loader, load_dataset, registry
from jaxcv.data.dataset import ArrayDataset, DataInfo
from jaxcv.data.device_loader import DeviceLoader
from jaxcv.domain_generalization import mnist, selection, splits
from jaxcv.domain_generalization.torch_rng import TorchCPUGenerator
from jaxcv.errors import ConfigError
from jaxcv.evaluators import build_evaluators

from conftest import REPO_ROOT

ERM_CONFIG = str(REPO_ROOT / 'configs' / 'domainbed' / 'erm.py')


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
  monkeypatch.setenv('JAXCV_CACHE_DIR', str(tmp_path / 'cache'))


def indexed(domain_sizes, num_classes=2):
  """A dataset whose image i holds i (two pixels, base 256), with domain ids."""
  n = sum(domain_sizes)
  ids = np.arange(n)
  images = np.stack([ids % 256, ids // 256], -1).astype(np.uint8).reshape(n, 1, 2, 1)
  domains = np.repeat(np.arange(len(domain_sizes)), domain_sizes).astype(np.int32)
  return ArrayDataset(images, (ids % num_classes).astype(np.int32),
                      [str(c) for c in range(num_classes)], domains=domains,
                      domain_names=[f'env{d}' for d in range(len(domain_sizes))])


def ids_of(data):
  return data.images[:, 0, 0, 0].astype(int) + 256 * data.images[:, 0, 1, 0].astype(int)


# ---------------------------------------------------------------------------------------------
# In/out splits
# ---------------------------------------------------------------------------------------------

def domainbed_split_dataset(n, n_out, seed):
  """DomainBed's misc.split_dataset, transcribed: (out keys, in keys)."""
  keys = list(range(n))
  np.random.RandomState(seed).shuffle(keys)
  return keys[:n_out], keys[n_out:]


def test_seed_hash_and_env_split_follow_domainbed():
  assert splits.seed_hash(0, 1) == int(hashlib.md5(b'(0, 1)').hexdigest(), 16) % 2**31
  assert splits.seed_hash(0, 1) != splits.seed_hash(1, 1) != splits.seed_hash(1, 0)
  in_, out = splits.split_env(2048, 0.2, splits.seed_hash(3, 0))
  ref_out, ref_in = domainbed_split_dataset(2048, int(2048 * 0.2), splits.seed_hash(3, 0))
  assert out.tolist() == ref_out and in_.tolist() == ref_in and len(out) == 409


def test_domainbed_splits_partition_each_env_deterministically():
  base = indexed([50, 31, 64])
  get = lambda split, **kw: splits.domainbed_split(base, split, **{'test': 'env2', **kw})
  train_ids, val_ids = ids_of(get('train')), ids_of(get('val'))
  test_in, test_out = ids_of(get('test_in')), ids_of(get('test_out'))
  assert not set(train_ids) & set(val_ids) and not set(test_in) & set(test_out)
  assert sorted(np.concatenate([train_ids, val_ids])) == list(range(81))  # Envs 0 and 1 whole.
  assert sorted(ids_of(get('test'))) == sorted(np.concatenate([test_in, test_out])) == list(
      range(81, 145))
  assert sorted(ids_of(get('train_full'))) == list(range(81))
  assert np.bincount(get('val').domains).tolist() == [10, 6]  # int(50 * .2), int(31 * .2)
  assert len(test_out) == 12 and set(get('test').domains) == {2}
  assert get('train').domain_names == base.domain_names  # Ids keep their meaning.
  # Deterministic; another trial seed cuts differently; each env is cut on its own, so its
  # parts do not depend on which env is the test one (nor on the others' sizes).
  assert ids_of(get('val')).tolist() == val_ids.tolist()
  assert ids_of(get('val', seed=1)).tolist() != val_ids.tolist()
  env0_val = val_ids[val_ids < 50]
  other = splits.domainbed_split(base, 'val', test='env1')
  assert ids_of(other)[other.domains == 0].tolist() == env0_val.tolist()
  # A position inside an env is `out` exactly when DomainBed's split of that env (seeded with
  # seed_hash(trial_seed, env index)) puts it there.
  ref_out, _ = domainbed_split_dataset(31, 6, splits.seed_hash(3, 1))
  val = get('val', seed=3)
  assert sorted(ids_of(val)[val.domains == 1] - 50) == sorted(ref_out)
  # test= also takes an index; bad input is a ConfigError.
  assert ids_of(splits.domainbed_split(base, 'test', test='2')).tolist() == list(range(81, 145))
  for bad in ('test=nope', 'test=env0,holdout=1.5', 'holdout=0.2', 'test=env0,fold=1'):
    with pytest.raises(ConfigError):
      splits.load_derived('domainbed', bad, base, 'train')
  with pytest.raises(ConfigError, match='splits'):
    get('all')


def write_domainbed_tree(root, domains=('d0', 'd1', 'd2'), per_class=20, size=8):
  """root/PACS/<domain>/<class>/<i>.png: class 0 dark, class 1 bright, a tint per domain."""
  rng = np.random.default_rng(0)
  for d, domain in enumerate(domains):
    for c, name in enumerate(('dark', 'bright')):
      folder = root / 'PACS' / domain / name
      folder.mkdir(parents=True)
      for i in range(per_class):
        base = 60 + 120 * c + rng.integers(-30, 30)
        image = np.full((size, size, 3), base, np.int64)
        image[..., d % 3] += 40
        noise = rng.integers(-20, 20, image.shape)
        Image.fromarray(np.clip(image + noise, 0, 255).astype(np.uint8)).save(folder / f'{i}.png')
  return root


def test_domainbed_derived_name_reads_the_whole_base(tmp_path):
  write_domainbed_tree(tmp_path)
  base = load_dataset('pacs', 'all', tmp_path)
  train_set = load_dataset('domainbed(test=d1,seed=2):pacs', 'train', tmp_path)
  assert train_set.domain_names == ['d0', 'd1', 'd2'] and set(train_set.domains) == {0, 2}
  assert len(train_set) == 2 * 32 and 'domainbed(test=d1' in train_set.source
  parts = splits.env_parts(base.domains, 3, 0.2, 2)
  np.testing.assert_array_equal(train_set.images, base.images[np.sort(np.concatenate(
      [parts[0][0], parts[2][0]]))])


# ---------------------------------------------------------------------------------------------
# RotatedMNIST / ColoredMNIST
# ---------------------------------------------------------------------------------------------

def write_idx(path, array):
  code = 0x08
  header = bytes([0, 0, code, array.ndim]) + struct.pack(f'>{array.ndim}I', *array.shape)
  path.write_bytes(header + array.astype(np.uint8).tobytes())


def fake_mnist(folder, n_train=300, n_test=60):
  """idx files whose image i has pixel [0, 0] = i % 256, [0, 1] = i // 256 and a blob."""
  folder.mkdir(parents=True, exist_ok=True)
  n = n_train + n_test
  images = np.zeros((n, 28, 28), np.uint8)
  images[:, 8:20, 12:16] = 200
  images[:, 0, 0], images[:, 0, 1] = np.arange(n) % 256, np.arange(n) // 256
  digits = (np.arange(n) * 7) % 10
  for prefix, sl in (('train', slice(0, n_train)), ('t10k', slice(n_train, n))):
    write_idx(folder / f'{prefix}-images-idx3-ubyte', images[sl])
    write_idx(folder / f'{prefix}-labels-idx1-ubyte', digits[sl])
  return images, digits


def test_rotated_mnist_deals_round_robin_and_rotates(tmp_path):
  images, digits = fake_mnist(tmp_path / 'mnist')
  assert registry.ROTATED_MNIST_ENVS == mnist.ROTATED_ENVS
  assert registry.COLORED_MNIST_ENVS == mnist.COLORED_ENVS
  data = load_dataset('rotated_mnist', 'all', tmp_path)
  assert data.image_shape == (28, 28, 1) and data.domain_names == list(mnist.ROTATED_ENVS)
  assert np.bincount(data.domains).tolist() == [60] * 6
  # Env 0 is unrotated: its images are exactly the originals, a sixth of them, with their digits.
  env0 = data.subset(data.domains == 0)
  ids = env0.images[:, 0, 0, 0].astype(int) + 256 * env0.images[:, 0, 1, 0].astype(int)
  np.testing.assert_array_equal(env0.images[..., 0], images[ids])
  np.testing.assert_array_equal(env0.labels, digits[ids])
  # The same shuffle dealt env i the examples shuffle[i::6]: together every example once.
  shuffle = TorchCPUGenerator(mnist.DEFAULT_SEED).randperm(360)  # DomainBed: torch.randperm.
  np.testing.assert_array_equal(ids, shuffle[0::6])
  env1 = data.subset(data.domains == 1)
  np.testing.assert_array_equal(env1.labels, digits[shuffle[1::6]])
  # 15 degrees counter-clockwise, bilinear, zero fill: scipy agrees up to uint8 rounding.
  expected = scipy.ndimage.rotate(images[shuffle[1]].astype(float), 15, reshape=False, order=1)
  assert np.abs(env1.images[0, ..., 0] - expected).max() <= 1.0
  assert not np.array_equal(env1.images[0, ..., 0], images[shuffle[1]])
  one = load_dataset('rotated_mnist', '15', tmp_path)  # One env alone is the same env.
  np.testing.assert_array_equal(one.images, env1.images)
  assert set(one.domains) == {1}


def test_rotation_direction_is_counter_clockwise():
  image = np.zeros((1, 28, 28), np.uint8)
  image[0, 13:15, 20:22] = 255  # Right of the centre (13.5, 13.5).
  rows, cols = np.nonzero(mnist.rotate(image, 45)[0])
  assert rows.mean() == pytest.approx(13.5 - 7 / 2**0.5, abs=0.2)  # Moved up ...
  assert cols.mean() == pytest.approx(13.5 + 7 / 2**0.5, abs=0.2)  # ... and still right.


def test_colored_mnist_label_and_colour_noise():
  n = 9000
  digits = np.arange(n) % 10
  images = np.zeros((n, 4, 4), np.uint8)
  images[:, 0, 0] = digits + 1  # Recover each example's digit from its coloured pixel.
  data = mnist.environments('colored', images, digits)
  assert data.image_shape == (4, 4, 2) and data.class_names == mnist.COLORED_CLASSES
  colour = (data.images[:, 0, 0, 1] > 0).astype(int)
  assert np.all(data.images[np.arange(n), 0, 0, 1 - colour] == 0)  # One channel only.
  digit = data.images[:, 0, 0].max(-1).astype(int) - 1
  clean = (digit < 5).astype(int)
  assert np.mean(data.labels != clean) == pytest.approx(0.25, abs=0.03)
  for env, flip in enumerate(mnist.COLOR_FLIPS):
    m = data.domains == env
    assert m.sum() == n // 3
    assert np.mean(colour[m] != data.labels[m]) == pytest.approx(flip, abs=0.04)
  again = mnist.environments('colored', images, digits)
  np.testing.assert_array_equal(again.images, data.images)


def test_colored_mnist_from_idx_files(tmp_path):
  fake_mnist(tmp_path / 'mnist')
  data = load_dataset('colored_mnist', 'all', tmp_path)
  assert np.bincount(data.domains).tolist() == [120] * 3 and data.image_shape == (28, 28, 2)
  test_env = load_dataset('domainbed(test=-90%):colored_mnist', 'test', tmp_path)
  np.testing.assert_array_equal(test_env.images, load_dataset('colored_mnist', '-90%',
                                                              tmp_path).images)


def test_real_mnist_environments(shared_data_dir):
  data = load_dataset('rotated_mnist', '75', shared_data_dir)
  assert len(data) == 11666 and data.image_shape == (28, 28, 1)


# ---------------------------------------------------------------------------------------------
# Balanced batches
# ---------------------------------------------------------------------------------------------

def one_device_mesh():
  return parallel.make_mesh(config_lib.base_config().mesh, jax.devices()[:1])


def test_balanced_batches_take_equal_shares_per_domain_deterministically():
  data = indexed([40, 17, 25])
  mesh = parallel.make_mesh(config_lib.base_config().mesh)  # 8 devices: batch 24 shards.
  loader = DeviceLoader(data, 24, seed=3, mesh=mesh, balance_domains=True)
  get = jax.jit(loader.get_batch)
  batches = [jax.device_get(get(loader.inputs(s), jnp.int32(s))) for s in range(6)]
  domain_of = data.domains
  for batch in batches:
    ids = ids_of(types.SimpleNamespace(images=batch['image']))
    np.testing.assert_array_equal(batch['domain'], np.repeat([0, 1, 2], 8))
    np.testing.assert_array_equal(domain_of[ids], batch['domain'])  # Ids match the images.
    np.testing.assert_array_equal(batch['label'], data.labels[ids])
  # Within a domain's epoch no example repeats: domain 1 (17 examples) has 2-step epochs.
  d1 = [ids_of(types.SimpleNamespace(images=b['image']))[8:16] for b in batches]
  assert len(set(np.concatenate(d1[:2]))) == 16 and len(set(np.concatenate(d1[2:4]))) == 16
  assert not np.array_equal(d1[0], d1[2])  # A new permutation each epoch.
  # A pure function of (seed, step): a fresh loader, steps out of order.
  other = DeviceLoader(data, 24, seed=3, mesh=mesh, balance_domains=True)
  np.testing.assert_array_equal(jax.device_get(other.get_batch(other.inputs(5), jnp.int32(5))
                                               )['image'], batches[5]['image'])
  reseeded = DeviceLoader(data, 24, seed=4, mesh=mesh, balance_domains=True)
  assert not np.array_equal(jax.device_get(reseeded.get_batch(reseeded.inputs(0), jnp.int32(0))
                                           )['image'], batches[0]['image'])
  assert loader.steps_per_epoch == 2  # The smallest domain's, as DomainBed counts epochs.


def test_balanced_batches_reject_bad_inputs():
  mesh = one_device_mesh()
  with pytest.raises(ConfigError, match='divisible by the 3'):
    DeviceLoader(indexed([40, 17, 25]), 20, 0, mesh, balance_domains=True)
  with pytest.raises(ConfigError, match='fewer'):
    DeviceLoader(indexed([40, 5, 25]), 21, 0, mesh, balance_domains=True)
  plain = indexed([40])
  plain.domains = None
  with pytest.raises(ConfigError, match='domain ids'):
    DeviceLoader(plain, 8, 0, mesh, balance_domains=True)
  # Without balancing the domain ids still ride along.
  loader = DeviceLoader(indexed([40, 17, 25]), 8, 0, mesh)
  batch = jax.device_get(loader.get_batch(loader.inputs(0), jnp.int32(0)))
  np.testing.assert_array_equal(batch['domain'], indexed([40, 17, 25]).domains[
      ids_of(types.SimpleNamespace(images=batch['image']))])


# ---------------------------------------------------------------------------------------------
# The 'domains' evaluator
# ---------------------------------------------------------------------------------------------

def test_domains_evaluator_reports_each_domain(tmp_path):
  write_domainbed_tree(tmp_path, per_class=10)
  config = config_lib.base_config()
  config.data.name = 'domainbed(test=d1):pacs'  # Its 'train' split lacks domain 1.
  config.data.data_dir = str(tmp_path)
  config.evals.dom = dict(type='domains', split='train', batch_size=24)
  # A predictor right about half the time, differently per image: class = parity of a pixel.
  parity = lambda x: jnp.round(x[:, 0, 0, 0] * 255) % 2
  predict = lambda variables, x: jnp.stack([1 - parity(x), parity(x)], -1)
  task = types.SimpleNamespace(info=DataInfo(2, (8, 8, 3), 32),
                               predict_fns=lambda: {'logits': predict})
  evaluator = build_evaluators(config, task, parallel.make_mesh(config.mesh))['dom']
  results = dict(evaluator.run({}))
  data = load_dataset(config.data.name, 'train', tmp_path)
  correct = (data.images[:, 0, 0, 0] % 2) == data.labels
  expected = {name: correct[data.domains == d].mean() for d, name in ((0, 'd0'), (2, 'd2'))}
  assert set(results) == {'acc/d0', 'acc/d2', 'acc/mean', 'accuracy', 'loss'}
  assert 0.1 < min(expected.values()) and max(expected.values()) < 0.9
  for name, acc in expected.items():
    assert results[f'acc/{name}'] == pytest.approx(acc, abs=1e-6)
  assert results['acc/mean'] == pytest.approx(np.mean(list(expected.values())), abs=1e-6)
  assert results['accuracy'] == pytest.approx(correct.mean(), abs=1e-6)


def test_domains_evaluator_needs_domain_ids():
  config = config_lib.base_config()
  config.data.name = 'synthetic:n=16,size=4'
  config.evals.dom = dict(type='domains', split='test')
  task = types.SimpleNamespace(info=DataInfo(10, (4, 4, 3), 16), predict_fns=lambda: {})
  with pytest.raises(ConfigError, match='domain ids'):
    build_evaluators(config, task, one_device_mesh())


# ---------------------------------------------------------------------------------------------
# Model selection
# ---------------------------------------------------------------------------------------------

def make_run(test_env, trial, hparams, rows):
  """rows: (step, val, test_in, test_out)."""
  records = [{'step': s, 'train/loss': 1.0} for s, *_ in rows]  # Train lines are ignored.
  records += [{'step': s, 'val/acc/mean': v, 'test_in/acc/mean': t, 'test_out/acc/mean': o}
              for s, v, t, o in rows]
  return selection.Run(test_env, trial, hparams, tuple(records))


def test_training_domain_validation_and_oracle():
  runs = [
      # env A, trial 0: hp1 peaks at step 100 (val .9); hp2's best val is .8; hp2 ends higher on
      # test_out, so the oracle takes hp2's last step.
      make_run('A', 0, 'hp1', [(100, .9, .70, .60), (200, .85, .75, .65)]),
      make_run('A', 0, 'hp2', [(100, .8, .50, .50), (200, .7, .55, .90)]),
      make_run('A', 1, 'hp1', [(100, .6, .60, .60), (200, .6, .64, .61)]),  # Tie: earlier step.
      make_run('A', 1, 'hp2', [(100, .5, .90, .95)]),
      make_run('B', 0, 'hp1', [(100, .9, .40, .10)]),
      make_run('B', 0, 'hp2', [(100, .9, .30, .20)]),  # Same val: the first hparams label wins.
      make_run('B', 1, 'hp1', [(100, .9, .20, .10)]),
      make_run('B', 1, 'hp3', [(50, .1, .99, .99)])
  ]
  iid = selection.select(runs)
  assert {k: (c.run.hparams, c.step, c.test) for k, c in iid.chosen.items()} == {
      ('A', 0): ('hp1', 100, .70), ('A', 1): ('hp1', 100, .60),
      ('B', 0): ('hp1', 100, .40), ('B', 1): ('hp1', 100, .20)}
  mean_a, err_a, n_a = iid.envs['A']
  assert (mean_a, n_a) == (pytest.approx(.65), 2) and err_a == pytest.approx(0.05 / 2**0.5)
  assert iid.average == pytest.approx((.65 + .30) / 2)
  trial_mean, trial_err, _ = iid.trial_average  # Trials average (.7 + .4) / 2 and (.6 + .2) / 2.
  assert trial_mean == pytest.approx(.475) and trial_err == pytest.approx(.075 / 2**0.5)
  oracle = selection.select(runs, selection.ORACLE)
  assert {k: (c.run.hparams, c.step, c.test) for k, c in oracle.chosen.items()} == {
      ('A', 0): ('hp2', 200, .55), ('A', 1): ('hp2', 100, .90),
      ('B', 0): ('hp2', 100, .30), ('B', 1): ('hp3', 50, .99)}
  assert 'oracle' in selection.format_summary(oracle)
  assert selection.run_choice(selection.Run('A', 0, 'x', ({'step': 1, 'train/loss': 2.0},))) is None
  with pytest.raises(ConfigError):
    selection.select(runs, 'loo')


def test_read_run_from_a_workdir(tmp_path):
  config = config_lib.base_config()
  config.data.name = 'domainbed(test=3,holdout=0.2,seed=2):pacs'
  rows = [{'step': 10, 'val/acc/mean': .5, 'test_in/acc/mean': .4, 'test_in/acc/sketch': .4},
          {'step': 20, 'val/acc/mean': .9, 'test_in/acc/mean': .1, 'test_in/acc/sketch': .1},
          {'step': 20, 'val/acc/mean': .6, 'test_in/acc/mean': .3, 'test_in/acc/sketch': .3}]
  for name, seed in (('a', 0), ('b', 5)):
    (tmp_path / name).mkdir()
    config.seed = seed
    (tmp_path / name / 'config.json').write_text(config.to_json())
    (tmp_path / name / 'metrics.jsonl').write_text(''.join(json.dumps(r) + '\n' for r in rows))
  run = selection.read_run(tmp_path / 'a')
  assert (run.test_env, run.trial) == ('sketch', 2)  # Named by the metrics, not test=3.
  assert selection.run_choice(run).step == 20 and selection.run_choice(run).val == .6  # Last wins.
  runs = selection.find_runs([tmp_path])
  assert len(runs) == 2 and runs[0].hparams == runs[1].hparams  # Only the seed differs.
  config.schedule.lr = 0.5
  assert selection._hparams_label(config.to_dict()) != runs[0].hparams


# ---------------------------------------------------------------------------------------------
# End to end
# ---------------------------------------------------------------------------------------------

def test_train_run_with_balanced_domains_and_domain_evals(tmp_path):
  write_domainbed_tree(tmp_path / 'data', per_class=16)
  config = config_lib.base_config()
  config.data.name = 'domainbed(test=d2):pacs'
  config.data.data_dir = str(tmp_path / 'data')
  config.data.augment = ''
  config.data.balance_domains = True
  config.model.name = 'small_cnn'
  config.batch_size = 16  # 8 per source domain.
  config.total_steps = 30
  config.schedule.lr = 0.05
  config.eval_every_steps = 10
  config.log_every_steps = 10
  config.checkpoint_every_steps = 0
  config.evals = splits.evals_config(batch_size=16)
  config.progress_bar = False
  config.plot = False
  summary = train.run(config, str(tmp_path / 'run'))
  assert summary['steps'] == 30
  assert {'val/acc/d0', 'val/acc/d1', 'val/acc/mean', 'test_in/acc/d2',
          'test_out/acc/d2'} <= set(summary)
  assert 'val/acc/d2' not in summary
  assert summary['val/acc/mean'] > 0.75  # Bright vs dark: chance is 0.5.
  run = selection.read_run(tmp_path / 'run')
  assert run.test_env == 'd2' and run.trial == 0
  choice = selection.run_choice(run)
  assert choice.step in (10, 20, 30)
  assert selection.select([run], selection.ORACLE).chosen[('d2', 0)].step == 30


def test_balance_domains_needs_the_device_loader():
  config = config_lib.base_config()
  config.data.loader = 'streaming'
  config.data.balance_domains = True
  with pytest.raises(ConfigError, match='device'):
    build_train_loader(config, indexed([8, 8]), one_device_mesh())


def test_evals_config_shape():
  evals = splits.evals_config(oracle=False)
  assert isinstance(evals, ml_collections.ConfigDict)
  assert sorted(evals) == ['test_in', 'val'] and evals.val.type == 'domains'


def test_erm_config_trains_rotated_mnist_with_domainbeds_cnn(tmp_path):
  fake_mnist(tmp_path / 'data' / 'mnist')
  config = config_lib.load(ERM_CONFIG +
                           ':dataset=rotated_mnist,test=75,runlocal',
                           [f'data.data_dir={tmp_path / "data"}', 'progress_bar=false',
                            'plot=false'])
  assert config.batch_size == 8 * 5 and config.data.balance_domains
  assert config.model.name == 'mnist_cnn'
  summary = train.run(config, str(tmp_path / 'run'))
  assert summary['steps'] == 10
  assert summary['parameters'] == 371_850  # DomainBed's MNIST_CNN, 1 channel, 10 classes.
  assert {'val/acc/0', 'val/acc/60', 'test_in/acc/75', 'test_out/acc/75'} <= set(summary)
  with pytest.raises(ConfigError, match='envs=N'):
    config_lib.load(ERM_CONFIG + ':dataset=vlcs')
