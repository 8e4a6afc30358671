"""Every notebook under colab/ runs top to bottom (in its smoke mode), so none can rot; each opens
in Colab the same way (badge, set-up cell, accelerator), and every figure it draws is shown."""

import json
import sys
import types
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from conftest import REPO_ROOT
from jaxcv import colab

NOTEBOOKS = sorted((REPO_ROOT / 'colab').glob('*.ipynb'))
# Text a notebook's outputs must contain, beyond running without errors.
EXPECTED_OUTPUT = {'00_quickstart.ipynb': 'accuracy'}
# A cell that draws: its output must hold a PNG image (an inline figure that vanished fails).
DRAWS = ('plt.show()', 'display(Image(')


def _images(cell) -> int:
  return sum(1 for o in cell.outputs if o.output_type in ('display_data', 'execute_result')
             and 'image/png' in o.get('data', {}))


@pytest.mark.parametrize('path', NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_executes(path: Path, tmp_path, monkeypatch):
  monkeypatch.setenv('JAXCV_NOTEBOOK_SMOKE', '1')
  monkeypatch.setenv('JAXCV_NOTEBOOK_RUNS', str(tmp_path))  # Never resume an earlier test's runs.
  notebook = nbformat.read(path, as_version=4)
  # Per cell; the UNet rows of 01 compile for minutes on a busy 2-core machine.
  client = NotebookClient(notebook, timeout=1200, kernel_name='python3',
                          resources={'metadata': {'path': str(REPO_ROOT)}})
  client.execute()
  code_cells = [cell for cell in notebook.cells if cell.cell_type == 'code']
  outputs = [o for cell in code_cells for o in cell.outputs]
  assert not [o for o in outputs if o.output_type == 'error']
  assert outputs, 'the notebook printed nothing'
  marker = EXPECTED_OUTPUT.get(path.name)
  if marker:
    assert any(marker in o.get('text', '') for o in outputs), f'no output mentions {marker!r}'
  setup = [cell for cell in code_cells if cell.source.startswith(colab.SETUP_MARKER)]
  assert len(setup) == 1 and not setup[0].outputs, 'the Colab set-up cell must do nothing here'
  drawing = [cell for cell in code_cells if any(d in cell.source for d in DRAWS)]
  assert drawing, 'the notebook shows no figure'
  for cell in drawing:
    assert _images(cell), f'no image shown by the cell:\n{cell.source[:300]}'


@pytest.mark.parametrize('path', NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_opens_in_colab(path: Path):
  """Badge first, the shared set-up cell, an accelerator in the metadata, the full mode's cost."""
  notebook = json.loads(path.read_text())
  synced = json.loads(path.read_text())
  assert not colab.sync_notebook(synced, path.name), 'stale: run python -m jaxcv.colab'
  first = ''.join(notebook['cells'][0]['source'])
  repository = colab.GITHUB_REPOSITORY
  assert f'colab.research.google.com/github/{repository}/blob/main/colab/{path.name}' in first
  assert notebook['metadata'].get('accelerator') in ('GPU', 'TPU')
  assert notebook['metadata'].get('colab', {}).get('gpuType')
  text = ' '.join(''.join(c['source']) for c in notebook['cells']
                  if c['cell_type'] == 'markdown')
  assert 'Data' in text and ('minute' in text or 'hour' in text), 'state the full mode cost'


def test_sync_inserts_a_badge_and_replaces_an_old_install_cell():
  old = {'nbformat': 4, 'nbformat_minor': 5, 'metadata': {}, 'cells': [
      {'cell_type': 'markdown', 'metadata': {}, 'source': ['# Title']},
      {'cell_type': 'code', 'metadata': {}, 'outputs': [], 'execution_count': None,
       'source': ["if 'google.colab' in sys.modules:\n", '    !pip install jaxcv']},
      {'cell_type': 'code', 'metadata': {}, 'outputs': [], 'execution_count': None,
       'source': ['print(1)']}]}
  assert colab.sync_notebook(old, '09_x.ipynb', repository='acme/jaxcv')
  sources = [''.join(c['source']) for c in old['cells']]
  assert 'github/acme/jaxcv/blob/main/colab/09_x.ipynb' in sources[0]
  assert sources[1] == '# Title' and sources[3] == 'print(1)'
  assert sources[2].startswith(colab.SETUP_MARKER) and 'https://github.com/acme/jaxcv' in sources[2]
  assert all(c.get('id') for c in old['cells'][:1])
  assert not colab.sync_notebook(old, '09_x.ipynb', repository='acme/jaxcv')  # Idempotent.


@pytest.mark.parametrize('env, devices, kind', [
    ({'COLAB_TPU_ADDR': '10.0.0.2:8470'}, (), 'tpu'),
    ({}, ('/dev/accel0',), 'tpu'),
    ({}, ('/dev/nvidia0',), 'gpu'),
    ({}, (), 'cpu'),
])
def test_colab_accelerator_and_its_jax_build(env, devices, kind):
  assert colab.accelerator(env, exists=lambda p: p in devices) == kind
  command = colab.pip_command('/content/jaxcv', kind)
  assert command[-1] == {'tpu': '/content/jaxcv[tpu]', 'gpu': '/content/jaxcv[cuda]',
                         'cpu': '/content/jaxcv'}[kind]
  extras = _extras()
  if kind != 'cpu':
    assert any(r.startswith(f'jax[{"tpu" if kind == "tpu" else "cuda12"}]')
               for r in extras[colab.EXTRAS[kind]])


def _extras():
  import tomllib  # pylint: disable=import-outside-toplevel
  with open(REPO_ROOT / 'pyproject.toml', 'rb') as f:
    return tomllib.load(f)['project']['optional-dependencies']


def test_colab_finds_a_jax_plugin_that_does_not_match_jaxlib():
  consistent = {'jaxcv': '0.1.0', 'jax': '0.11.2', 'jaxlib': '0.11.2',
                'jax-cuda12-plugin': '0.11.2', 'jax-cuda12-pjrt': '0.11.2'}
  assert colab.version_problems('gpu', consistent.get) == []
  stale_plugin = {**consistent, 'jax-cuda12-plugin': '0.10.0'}
  assert colab.version_problems('gpu', stale_plugin.get) == [
      'jax-cuda12-plugin 0.10.0 with jaxlib 0.11.2']
  no_plugin = {k: v for k, v in consistent.items() if not k.startswith('jax-cuda')}
  assert len(colab.version_problems('gpu', no_plugin.get)) == 2
  assert colab.version_problems('cpu', no_plugin.get) == []
  assert 'jaxcv is not installed' in colab.version_problems('cpu', {'jax': '1', 'jaxlib': '1'}.get)


def test_colab_setup_installs_once_and_asks_for_a_restart_when_jax_was_replaced(monkeypatch):
  calls = []
  versions = {'jax': '0.11.2', 'jaxlib': '0.11.2'}  # Colab's preinstalled jax, no jaxcv yet.

  def pip(command):
    calls.append(command)
    versions.update(jaxcv='0.1.0', jax='0.11.3', jaxlib='0.11.3')

  monkeypatch.setattr(colab, '_installed', versions.get)
  monkeypatch.setitem(sys.modules, 'jax', types.SimpleNamespace(__version__='0.11.2'))
  with pytest.raises(RuntimeError, match='Restart session'):
    colab.setup('/content/jaxcv', run=pip, env={})
  assert len(calls) == 1 and calls[0][-1] == '/content/jaxcv'
  monkeypatch.delitem(sys.modules, 'jax')  # After the restart: nothing to install again.
  assert colab.setup('/content/jaxcv', run=pip, env={}) == 'cpu'
  assert len(calls) == 1
