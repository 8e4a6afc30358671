"""Every notebook under colab/ runs top to bottom (in its smoke mode), so none can rot."""

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from conftest import REPO_ROOT

NOTEBOOKS = sorted((REPO_ROOT / 'colab').glob('*.ipynb'))
# Text a notebook's outputs must contain, beyond running without errors.
EXPECTED_OUTPUT = {'00_quickstart.ipynb': 'accuracy'}


@pytest.mark.parametrize('path', NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_executes(path: Path, tmp_path, monkeypatch):
  monkeypatch.setenv('JAXCV_NOTEBOOK_SMOKE', '1')
  monkeypatch.setenv('JAXCV_NOTEBOOK_RUNS', str(tmp_path))  # Never resume an earlier test's runs.
  notebook = nbformat.read(path, as_version=4)
  client = NotebookClient(notebook, timeout=600, kernel_name='python3',
                          resources={'metadata': {'path': str(REPO_ROOT)}})
  client.execute()
  outputs = [o for cell in notebook.cells if cell.cell_type == 'code' for o in cell.outputs]
  assert not [o for o in outputs if o.output_type == 'error']
  assert outputs, 'the notebook printed nothing'
  marker = EXPECTED_OUTPUT.get(path.name)
  if marker:
    assert any(marker in o.get('text', '') for o in outputs), f'no output mentions {marker!r}'
