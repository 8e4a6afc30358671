"""DomainBed's examples exactly: torch's CPU random stream reproduced without torch (checked
against draws recorded from torch, tests/fixtures/torch_rng.json, made by
scripts/record_torch_rng.py), RotatedMNIST / ColoredMNIST environments as DomainBed builds them,
and DomainBed's image folders in torchvision ImageFolder's order."""

import json
import os
import tarfile

import numpy as np
import pytest
from PIL import Image

from jaxcv.data import load_dataset, registry, sources
from jaxcv.domain_generalization import mnist
from jaxcv.domain_generalization.torch_rng import TorchCPUGenerator
from jaxcv.errors import ConfigError, DatasetNotFoundError

from conftest import REPO_ROOT

FIXTURE = json.loads((REPO_ROOT / 'tests' / 'fixtures' / 'torch_rng.json').read_text())
DOMAINBED_SEEDS = sorted(FIXTURE['domainbed'])


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
  monkeypatch.setenv('JAXCV_CACHE_DIR', str(tmp_path / 'cache'))


def full_permutation(record) -> tuple[np.ndarray, np.ndarray]:
  """(positions, values) of torch.randperm(70000) that the fixture recorded."""
  n = FIXTURE['randperm_n']
  head, tail = record['randperm_head'], record['randperm_tail']
  positions = np.concatenate([np.arange(len(head)), np.arange(n - len(tail), n)])
  return positions, np.asarray(head + tail)


# ---------------------------------------------------------------------------------------------
# torch's stream
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize('record', FIXTURE['small'], ids=lambda r: f'seed{r["seed"]}')
def test_small_randperms_and_rand_match_torch(record):
  for n in (1, 2, 10, 360):
    np.testing.assert_array_equal(TorchCPUGenerator(record['seed']).randperm(n),
                                  record[f'randperm_{n}'])
  rand = TorchCPUGenerator(record['seed']).rand(8)
  assert rand.dtype == np.float32
  np.testing.assert_array_equal(rand, np.asarray(record['rand_8'], np.float32))


@pytest.mark.parametrize('name', DOMAINBED_SEEDS)
def test_mnist_randperm_matches_torch_for_domainbeds_seeds(name):
  record = FIXTURE['domainbed'][name]
  positions, values = full_permutation(record)
  perm = TorchCPUGenerator(record['seed']).randperm(FIXTURE['randperm_n'])
  np.testing.assert_array_equal(perm[positions], values)
  assert np.array_equal(np.sort(perm), np.arange(len(perm)))


def test_other_seeds_shuffle_differently():
  a, b = (TorchCPUGenerator(s).randperm(1000) for s in (0, 1))
  assert np.mean(a == b) < 0.05
  np.testing.assert_array_equal(TorchCPUGenerator(3).randperm(1000),
                                TorchCPUGenerator(3).randperm(1000))
  with pytest.raises(ValueError):
    TorchCPUGenerator(-1)


def test_against_torch_itself_where_installed():
  torch = pytest.importorskip('torch')
  for seed in (0, 5, 123456789):
    torch.manual_seed(seed)
    perm, rand = torch.randperm(5000).numpy(), torch.rand(777).numpy()
    flips = (torch.rand(300) < 0.9).numpy()
    ours = TorchCPUGenerator(seed)
    np.testing.assert_array_equal(ours.randperm(5000), perm)
    np.testing.assert_array_equal(ours.rand(777), rand)
    np.testing.assert_array_equal(ours.bernoulli_as_domainbed(0.9, 300), flips)


# ---------------------------------------------------------------------------------------------
# RotatedMNIST / ColoredMNIST
# ---------------------------------------------------------------------------------------------

def tiny_mnist(n=70000):
  """n 2x2 images (content irrelevant) whose digit is the example's index mod 10 (labels must be
  classes): over thousands of positions, labels tell a wrong permutation from the right one."""
  return np.zeros((n, 2, 2), np.uint8), np.arange(n) % 10


@pytest.mark.parametrize('name', DOMAINBED_SEEDS[:2])
def test_rotated_mnist_environments_hold_domainbeds_examples(name):
  record = FIXTURE['domainbed'][name]
  positions, values = full_permutation(record)
  images, ids = tiny_mnist()
  for env in (0, 5):  # Env 5 is rotated: the examples are still those of shuffled[5::6].
    data = mnist.environments('rotated', images, ids, only=env, seed=record['seed'])
    assert set(data.domains) == {env} and len(data) == len(range(env, 70000, 6))
    mine = positions % 6 == env
    np.testing.assert_array_equal(data.labels[positions[mine] // 6], values[mine] % 10)


@pytest.mark.parametrize('name', DOMAINBED_SEEDS)
def test_colored_mnist_environments_follow_torchs_draws(name):
  record = FIXTURE['domainbed'][name]
  positions, values = full_permutation(record)
  n = FIXTURE['randperm_n']
  digits = np.arange(n) % 10
  images = np.ones((n, 1, 1), np.uint8)
  data = mnist.environments('colored', images, digits, seed=record['seed'])
  perm = TorchCPUGenerator(record['seed']).randperm(n)
  np.testing.assert_array_equal(perm[positions], values)
  for env, draws in enumerate(record['colored_mnist_envs']):
    part = data.subset(data.domains == env)
    clean = (digits[perm[env::3]] < 5).astype(int)
    assert len(part) == draws['size']
    label_flips = part.labels != clean
    colour = part.images[:, 0, 0, 1].astype(int)  # The digit sits in channel `colour`.
    colour_flips = colour != part.labels
    assert label_flips.sum() == draws['label_flips_count']
    assert colour_flips.sum() == draws['colour_flips_count']
    shown = len(draws['label_flips_head'])
    np.testing.assert_array_equal(label_flips[:shown], draws['label_flips_head'])
    np.testing.assert_array_equal(colour_flips[:shown], draws['colour_flips_head'])


def write_idx(path, array):
  header = bytes([0, 0, 0x08, array.ndim]) + b''.join(int(d).to_bytes(4, 'big')
                                                        for d in array.shape)
  path.write_bytes(header + array.astype(np.uint8).tobytes())


def test_seed_option_builds_that_seeds_environments(tmp_path):
  record = next(r for r in FIXTURE['small'] if r['seed'] == 7)
  folder = tmp_path / 'mnist'
  folder.mkdir()
  digits = np.arange(360) % 10
  images = np.zeros((360, 28, 28), np.uint8)
  images[:, 0, 0], images[:, 0, 1] = np.arange(360) % 256, np.arange(360) // 256
  for prefix, part in (('train', slice(0, 300)), ('t10k', slice(300, 360))):
    write_idx(folder / f'{prefix}-images-idx3-ubyte', images[part])
    write_idx(folder / f'{prefix}-labels-idx1-ubyte', digits[part])
  env0 = load_dataset('rotated_mnist(seed=7)', '0', tmp_path)
  ids = env0.images[:, 0, 0, 0].astype(int) + 256 * env0.images[:, 0, 1, 0].astype(int)
  np.testing.assert_array_equal(ids, np.asarray(record['randperm_360'])[0::6])
  default = load_dataset('rotated_mnist', '0', tmp_path)
  np.testing.assert_array_equal(default.images, load_dataset('rotated_mnist(seed=0)', '0',
                                                             tmp_path).images)
  assert not np.array_equal(default.images, env0.images)
  derived = load_dataset('domainbed(test=0):rotated_mnist(seed=7)', 'test', tmp_path)
  np.testing.assert_array_equal(derived.images, env0.images)
  with pytest.raises(ConfigError):
    load_dataset('rotated_mnist(sed=7)', '0', tmp_path)
  with pytest.raises(DatasetNotFoundError, match='takes no options'):
    load_dataset('pacs(seed=7)', 'all', tmp_path)


def test_real_rotated_mnist_holds_domainbeds_digits(shared_data_dir):
  record = FIXTURE['domainbed']['0']
  positions, values = full_permutation(record)
  all_digits = mnist.read_mnist_70k(shared_data_dir / 'mnist')[1]
  env = load_dataset('rotated_mnist', '30', shared_data_dir)
  mine = positions % 6 == 2
  np.testing.assert_array_equal(env.labels[positions[mine] // 6], all_digits[values[mine]])


# ---------------------------------------------------------------------------------------------
# Image folders in ImageFolder's order
# ---------------------------------------------------------------------------------------------

def imagefolder_order(class_dir):
  """torchvision's make_dataset for one class folder, transcribed: sorted(os.walk(...)), then
  sorted(fnames) in each folder."""
  return [os.path.relpath(os.path.join(root, f), class_dir)
          for root, _, fnames in sorted(os.walk(class_dir)) for f in sorted(fnames)]


def write_tree(root, folder, domains, names=('1', '10', '2', '100', '11', 'a', 'B')):
  """root/<folder>/<domain>/<class>/<name>.png whose pixel holds the file's number in the tree."""
  stems = {}
  k = 0
  for domain in domains:
    for cls in ('zebra', 'Ant', 'dog'):
      d = root / folder / domain / cls
      d.mkdir(parents=True)
      for name in names:
        Image.fromarray(np.full((2, 2, 3), k, np.uint8)).save(d / f'{name}.png')
        stems[k] = f'{domain}/{cls}/{name}.png'
        k += 1
  return stems


def listed(data, stems):
  return [stems[int(v)] for v in data.images[:, 0, 0, 0]]


def test_pacs_files_are_in_string_order_as_imagefolder(tmp_path):
  stems = write_tree(tmp_path, 'PACS', ('photo', 'art_painting'))
  data = load_dataset('pacs', 'all', tmp_path)
  assert data.domain_names == ['art_painting', 'photo'] and data.class_names == ['Ant', 'dog',
                                                                                  'zebra']
  expected = [f'{domain}/{cls}/{f}' for domain in ('art_painting', 'photo')
              for cls in ('Ant', 'dog', 'zebra')
              for f in imagefolder_order(tmp_path / 'PACS' / domain / cls)]
  assert listed(data, stems) == expected
  assert expected[:7] == [f'art_painting/Ant/{n}.png' for n in ('1', '10', '100', '11', '2', 'B',
                                                                'a')]
  # The same tree inside an archive reads in the same order.
  with tarfile.open(tmp_path / 'pacs-96.tar.gz', 'w:gz') as tar:
    tar.add(tmp_path / 'PACS', 'PACS')
  os.rename(tmp_path / 'PACS', tmp_path / 'moved')
  assert listed(load_dataset('pacs', 'all', tmp_path), stems) == expected
  # Plain image folders keep natural order ('2' before '10').
  plain = sources.list_image_folder(tmp_path / 'moved' / 'photo')[0]
  assert [os.path.basename(p) for p in plain[:4]] == ['1.png', '2.png', '10.png', '11.png']


@pytest.mark.parametrize('name,folder,domains', [
    ('vlcs', 'VLCS', registry.VLCS_DOMAINS),
    ('office_home', 'office_home', registry.OFFICE_HOME_DOMAINS),
    ('terra_incognita', 'terra_incognita', registry.TERRA_INCOGNITA_DOMAINS),
    ('domain_net', 'domain_net', registry.DOMAIN_NET_DOMAINS),
])
def test_domainbed_image_datasets_read_their_published_layout(tmp_path, name, folder, domains):
  with pytest.raises(DatasetNotFoundError, match=f'{folder}/<domain>/<class>/<image>'):
    load_dataset(name, 'all', tmp_path)
  stems = write_tree(tmp_path, folder, domains[::-1], names=('3', '20'))
  data = load_dataset(name, 'all', tmp_path)
  assert data.domain_names == sorted(domains) == list(domains)  # DomainBed's env order.
  assert listed(data, stems)[:2] == [f'{domains[0]}/Ant/20.png', f'{domains[0]}/Ant/3.png']
  one = load_dataset(name, domains[-1], tmp_path)
  assert set(one.domains) == {len(domains) - 1} and len(one) == 6
