"""The plug-in convention (jaxcv/plugins.py) and the lazy imports it buys."""

import json
import subprocess
import sys
import textwrap

import pytest

from jaxcv import plugins
from jaxcv.errors import ConfigError

# What importing the training loop must not import: big models, capabilities and papers' packages.
HEAVY = ('jaxcv.models.inception', 'jaxcv.attacks', 'jaxcv.unlearnable', 'jaxcv.diffusion',
         'jaxcv.ood', 'jaxcv.fast', 'jaxcv.domain_generalization', 'jaxcv.segmentation',
         'jaxcv.tasks.adversarial', 'jaxcv.tasks.afd', 'jaxcv.tasks.diffusion',
         'jaxcv.evaluators.generative', 'jaxcv.evaluators.ood')


def _modules_after(code: str) -> list[str]:
  """The jaxcv modules a fresh interpreter has imported after running `code`."""
  script = code + '\nimport json, sys\nprint(json.dumps(sorted(m for m in sys.modules ' \
                  "if m.startswith('jaxcv'))))"
  out = subprocess.run([sys.executable, '-c', script], capture_output=True, text=True, check=True)
  return json.loads(out.stdout.strip().splitlines()[-1])


def _heavy(modules):
  return [m for m in modules if any(m == h or m.startswith(h + '.') for h in HEAVY)]


def test_importing_the_loop_imports_no_capability():
  modules = _modules_after('import jaxcv.train')
  assert 'jaxcv.train' in modules and 'jaxcv.tasks' in modules
  assert _heavy(modules) == []


def test_a_name_imports_its_package_on_first_use():
  modules = _modules_after(textwrap.dedent("""
      from jaxcv.data import augment
      from jaxcv.tasks import TASKS
      assert 'coin' in augment.op_names() and 'afd' in TASKS
      import sys
      assert 'jaxcv.unlearnable' not in sys.modules and 'jaxcv.tasks.afd' not in sys.modules
      augment.build('crop(padding=4)|coin(alpha=1.6)')
      TASKS['pgd_at']
  """))
  assert 'jaxcv.unlearnable.augment' in modules and 'jaxcv.tasks.adversarial' in modules
  assert 'jaxcv.tasks.afd' not in modules and 'jaxcv.diffusion' not in modules


@pytest.fixture
def plugin_package(tmp_path, monkeypatch):
  """A package `fake_plugins` on sys.path: `conv_op` registers 'conv_op' in REG; `indexed`
  registers 'alpha'; `silent` registers nothing; `broken` imports a missing module."""
  package = tmp_path / 'fake_plugins'
  package.mkdir()
  (package / '__init__.py').write_text(
      'from jaxcv import plugins\nREG = plugins.Registry("widget", package="fake_plugins", '
      'modules={"alpha": "fake_plugins.indexed", "ghost": "fake_plugins.silent", '
      '"broken": "fake_plugins.broken", "attr": "fake_plugins.indexed:VALUE"})\n')
  (package / 'conv_op.py').write_text(
      'from fake_plugins import REG\n@REG.register("conv_op")\ndef conv_op():\n  return 1\n')
  (package / 'indexed.py').write_text(
      'from fake_plugins import REG\nREG.register("alpha", "A")\nVALUE = "V"\n')
  (package / 'silent.py').write_text('X = 1\n')
  (package / 'broken.py').write_text('import fake_plugins_missing_dependency\n')
  monkeypatch.syspath_prepend(str(tmp_path))
  yield
  for name in [m for m in sys.modules if m.split('.')[0] == 'fake_plugins']:
    del sys.modules[name]


def test_lazy_index_and_conventional_module(plugin_package):
  from fake_plugins import REG  # pylint: disable=import-outside-toplevel
  assert 'alpha' in REG and 'fake_plugins.indexed' not in sys.modules  # `in` imports nothing.
  assert REG['alpha'] == 'A' and 'fake_plugins.indexed' in sys.modules
  assert REG['attr'] == 'V'  # 'module:attribute' index entries need no register call.
  assert 'conv_op' not in REG  # Not indexed: found by convention on first use.
  assert REG['conv_op']() == 1 and 'conv_op' in REG.registered()
  assert REG.get('nothing', 'default') == 'default'


def test_unknown_names_list_the_known_ones(plugin_package):
  from fake_plugins import REG  # pylint: disable=import-outside-toplevel
  with pytest.raises(plugins.UnknownNameError,
                     match="unknown widget 'gamma'; known: alpha, attr, broken, ghost") as error:
    REG['gamma']  # pylint: disable=pointless-statement
  assert isinstance(error.value, ConfigError) and isinstance(error.value, KeyError)
  with pytest.raises(plugins.UnknownNameError, match="unknown widget 'os.path'"):
    REG['os.path']  # pylint: disable=pointless-statement  # Not a module name to import.
  with pytest.raises(ConfigError, match='fake_plugins.silent was imported but registers no'):
    REG['ghost']  # pylint: disable=pointless-statement
  # A missing import inside a providing module is the real error, not an unknown name.
  with pytest.raises(ModuleNotFoundError, match='fake_plugins_missing_dependency'):
    REG['broken']  # pylint: disable=pointless-statement


def test_register_twice_and_mapping_use(monkeypatch):
  reg = plugins.Registry('thing', entries={'a': 1})
  reg.register('a', 1)  # The same object again (a module imported twice) is fine.
  with pytest.raises(ValueError, match="thing 'a' registered twice"):
    reg.register('a', 2)
  monkeypatch.setitem(reg, 'b', 3)  # Tests replace entries as in a dict.
  assert reg['b'] == 3 and list(reg) == ['a', 'b'] and len(reg) == 2
  monkeypatch.undo()
  assert 'b' not in reg


def test_every_indexed_name_resolves():
  """The lazy indexes name modules that do register those names."""
  from jaxcv.data import augment, registry  # pylint: disable=import-outside-toplevel
  from jaxcv.evaluators import EVALUATORS  # pylint: disable=import-outside-toplevel
  from jaxcv.pretrained import CONVERTERS  # pylint: disable=import-outside-toplevel
  from jaxcv.tasks import TASKS  # pylint: disable=import-outside-toplevel
  for reg in (TASKS, EVALUATORS, augment._OPS, registry.DERIVED, CONVERTERS):  # pylint: disable=protected-access
    for name in reg.modules:
      assert reg[name] is not None, (reg.kind, name)
