"""Colab set-up for the notebooks under colab/: install jaxcv with the runtime's jax build.

Each notebook's first code cell clones the repository into /content/jaxcv and runs this file as a
script (`%run /content/jaxcv/jaxcv/colab.py`), before jaxcv and its dependencies are installed:
so it imports nothing but the standard library. The cell is safe to run again at any time, and
after a runtime restart: what is installed and consistent is not installed again.

- The accelerator attached decides the jax build: `pip install -e .[cuda]` (jax[cuda12]) on a
  GPU, `.[tpu]` (jax[tpu]) on a TPU, the plain CPU build otherwise, in one pip call, so pip picks
  jax, jaxlib and the accelerator plugin of one release together.
- Afterwards the installed jax, jaxlib and plugin versions are compared; a mismatch is an error
  with the command that repairs it, not a confusing failure later.
- When pip replaced a jax that this Python process had already imported (Colab preinstalls jax),
  the new one only loads in a fresh process: the cell stops and asks for Runtime > Restart
  session; run it again afterwards and it goes straight through.

`python -m jaxcv.colab` rewrites every notebook's badge and set-up cell from GITHUB_REPOSITORY
and SETUP_CELL below, and `python -m jaxcv.colab --check` fails when one is out of date (the
tests run it).
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Callable, Mapping, Optional

# Placeholder: the GitHub repository (owner/name) the notebooks are published from. Change it
# here, then run `python -m jaxcv.colab` to rewrite the badges and clone URLs of every notebook.
GITHUB_REPOSITORY = 'YOUR_GITHUB_ORG/jaxcv'
CHECKOUT = '/content/jaxcv'
NOTEBOOK_FOLDER = 'colab'

# The pip extra of pyproject.toml that brings each accelerator's jax build.
EXTRAS = {'gpu': 'cuda', 'tpu': 'tpu', 'cpu': ''}
# Distributions that must carry jaxlib's version on each accelerator (the PJRT plugins).
PLUGINS = {'gpu': ('jax-cuda12-plugin', 'jax-cuda12-pjrt'), 'tpu': (), 'cpu': ()}

BADGE_MARKER = 'colab-badge.svg'
SETUP_MARKER = '# Colab set-up'
SETUP_CELL = f'''{SETUP_MARKER}: clone jaxcv and install it with this runtime's jax build
# (GPU: jax[cuda12], TPU: jax[tpu]). Safe to rerun, also after a runtime restart.
# Skipped outside Colab (and in the tests).
import os, subprocess, sys
JAXCV_REPO = 'https://github.com/{{repository}}'
if 'google.colab' in sys.modules:
    if not os.path.isdir('{CHECKOUT}/.git'):
        subprocess.run(['git', 'clone', '-q', '--depth', '1', JAXCV_REPO, '{CHECKOUT}'], check=True)
    os.chdir('{CHECKOUT}')
    %run {CHECKOUT}/jaxcv/colab.py'''


def badge_cell(notebook_name: str, repository: str = GITHUB_REPOSITORY) -> str:
  url = (f'https://colab.research.google.com/github/{repository}/blob/main/'
         f'{NOTEBOOK_FOLDER}/{notebook_name}')
  return (f'[![Open In Colab](https://colab.research.google.com/assets/{BADGE_MARKER})]({url})')


def setup_cell(repository: str = GITHUB_REPOSITORY) -> str:
  return SETUP_CELL.replace('{repository}', repository)


# ---------------------------------------------------------------------------- the install
def accelerator(env: Mapping[str, str] = os.environ,
                exists: Callable[[str], bool] = os.path.exists) -> str:
  """'tpu', 'gpu' or 'cpu': what the runtime has attached (before jax can be asked)."""
  if env.get('COLAB_TPU_ADDR') or env.get('TPU_ACCELERATOR_TYPE') or exists('/dev/accel0') \
      or exists('/dev/vfio/0'):
    return 'tpu'
  if exists('/dev/nvidia0') or env.get('NVIDIA_VISIBLE_DEVICES', 'void') not in ('void', '',
                                                                            'none'):
    return 'gpu'
  return 'cpu'


def pip_command(checkout: str, kind: str) -> list[str]:
  extra = EXTRAS[kind]
  return [sys.executable, '-m', 'pip', 'install', '-q', '-e',
          f'{checkout}[{extra}]' if extra else checkout]


def _installed(name: str) -> Optional[str]:
  try:
    return importlib.metadata.version(name)
  except importlib.metadata.PackageNotFoundError:
    return None


def version_problems(kind: str,
                     version: Optional[Callable[[str], Optional[str]]] = None) -> list[str]:
  """What is missing or mismatched among jaxcv, jax, jaxlib and the accelerator's plugins."""
  version = version or _installed
  problems = [f'{name} is not installed' for name in ('jaxcv', 'jax', 'jaxlib')
              if version(name) is None]
  jaxlib = version('jaxlib')  # jax[cuda12] pins its plugins to jaxlib's version exactly.
  for plugin in PLUGINS[kind]:
    found = version(plugin)
    if found is None:
      problems.append(f'{plugin} is not installed (the {kind.upper()} build of jax)')
    elif jaxlib and found != jaxlib:
      problems.append(f'{plugin} {found} with jaxlib {jaxlib}')
  if kind == 'tpu' and version('libtpu') is None and version('libtpu-nightly') is None:
    problems.append('libtpu is not installed (the TPU build of jax)')
  return problems


def setup(checkout: str = CHECKOUT, run: Callable[[list[str]], object] = subprocess.check_call,
          env: Mapping[str, str] = os.environ) -> str:
  """Installs what is missing; returns the accelerator kind. Raises when a restart is needed."""
  kind = accelerator(env)
  if kind == 'cpu':
    print('WARNING: no accelerator attached. Runtime > Change runtime type > a GPU (e.g. T4) or '
          'TPU, then run this cell again; on a CPU only the smoke mode is practical.')
  loaded = sys.modules.get('jax')
  loaded_version = getattr(loaded, '__version__', None)
  problems = version_problems(kind)
  if problems:
    print(f'Installing jaxcv for a {kind.upper()} runtime ({"; ".join(problems)}) ...')
    run(pip_command(checkout, kind))
    importlib.invalidate_caches()
    problems = version_problems(kind)
    if problems:
      raise RuntimeError('jax is inconsistent after the install: ' + '; '.join(problems)
                         + '. Repair it with: ' + ' '.join(pip_command(checkout, kind))
                         + ' --force-reinstall')
  if loaded_version and loaded_version != _installed('jax'):
    raise RuntimeError(f'pip replaced jax {loaded_version} (already imported here) with '
                       f'{_installed("jax")}: Runtime > Restart session, then run this cell '
                       'again (it will not reinstall).')
  print(f'jaxcv {_installed("jaxcv")}, jax {_installed("jax")} ({kind.upper()} runtime) ready; '
        f'working directory {os.getcwd()}')
  return kind


# ---------------------------------------------------------------------------- the notebooks
def _new_cell(notebook: dict, kind: str) -> dict:
  cell = {'cell_type': kind, 'metadata': {}, 'source': []}
  if kind == 'code':
    cell.update(execution_count=None, outputs=[])
  if notebook.get('nbformat_minor', 0) >= 5:  # nbformat 4.5 cells carry an id.
    cell['id'] = uuid.uuid4().hex[:8]
  return cell


def sync_notebook(notebook: dict, name: str, repository: str = GITHUB_REPOSITORY) -> bool:
  """Rewrites a notebook's (parsed JSON) badge and set-up cell from this module; True if changed."""
  cells = notebook['cells']
  changed = False
  if not cells or BADGE_MARKER not in ''.join(cells[0]['source']):
    cells.insert(0, _new_cell(notebook, 'markdown'))
    changed = True
  setup_index = next((i for i, c in enumerate(cells) if c['cell_type'] == 'code'
                      and ''.join(c['source']).startswith(SETUP_MARKER)), None)
  if setup_index is None:  # An older install cell (the one that mentions Colab), or none yet.
    setup_index = next((i for i, c in enumerate(cells) if c['cell_type'] == 'code'
                        and 'google.colab' in ''.join(c['source'])), None)
  if setup_index is None:
    setup_index = 2 if len(cells) > 1 and cells[1]['cell_type'] == 'markdown' else 1
    cells.insert(setup_index, _new_cell(notebook, 'code'))
  for index, text in ((0, badge_cell(name, repository)), (setup_index, setup_cell(repository))):
    lines = text.splitlines(keepends=True)
    if cells[index]['source'] != lines:
      cells[index]['source'] = lines
      changed = True
  return changed


def main(argv: Optional[list[str]] = None) -> int:
  argv = sys.argv[1:] if argv is None else argv
  check = '--check' in argv
  stale = []
  for path in sorted((Path(__file__).resolve().parent.parent / NOTEBOOK_FOLDER).glob('*.ipynb')):
    notebook = json.loads(path.read_text())
    if sync_notebook(notebook, path.name):
      stale.append(path.name)
      if not check:
        path.write_text(json.dumps(notebook, indent=1, ensure_ascii=False) + '\n')
  if check and stale:
    print(f'out of date (run python -m jaxcv.colab): {", ".join(stale)}')
    return 1
  for name in ([] if check else stale):
    print('rewrote', name)
  return 0


if __name__ == '__main__':
  # Inside a notebook (`%run`), set up the runtime; from a shell, sync the notebooks.
  if 'google.colab' in sys.modules:
    setup()
  else:
    sys.exit(main())
