"""configs/ as a package: configs load by the README's paths from anywhere (a checkout or the
installed jaxcv.configs), import their siblings, and every paper's table declares its presets."""

import pytest

from jaxcv import config as config_lib
from jaxcv import sweep
from jaxcv.errors import ConfigError

from conftest import REPO_ROOT

TABLES = sorted(p.parent.name for p in (REPO_ROOT / 'configs').glob('*/table.py'))


def test_readme_paths_resolve_outside_the_checkout(tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)  # No configs/ folder here: resolved as the package jaxcv.configs.
  config = config_lib.load('configs/afd/vaft.py:runlocal')  # Imports its sibling `common`.
  assert config.task == 'pgd_at'
  assert tuple(config.model.kwargs.input_mean) == pytest.approx((0.4914, 0.4822, 0.4465))
  with pytest.raises(ConfigError, match='does not exist'):
    config_lib.load('configs/afd/no_such_config.py')


def test_a_users_own_config_package_imports_its_siblings(tmp_path):
  package = tmp_path / 'myconfigs'
  package.mkdir()
  (package / '__init__.py').write_text('')
  (package / 'shared.py').write_text('STEPS = 7\n')
  (package / 'exp.py').write_text(
      'from jaxcv import config as config_lib\nfrom . import shared\n\n'
      'def get_config(arg=None):\n  c = config_lib.base_config()\n'
      '  c.total_steps = shared.STEPS\n  return c\n')
  assert config_lib.load(str(package / 'exp.py')).total_steps == 7


@pytest.mark.parametrize('paper', TABLES)
def test_every_table_declares_its_three_presets(paper):
  for preset in sweep.PRESETS:
    table = sweep.load_table(str(REPO_ROOT / 'configs' / paper / f'table.py:{preset}'))
    assert table.rows and table.columns, (paper, preset)
    for row in table.rows:
      if row.config:  # Every config row's file exists (loading it would train nothing yet).
        assert (REPO_ROOT / row.config).is_file() or row.config.startswith('/'), row.config
