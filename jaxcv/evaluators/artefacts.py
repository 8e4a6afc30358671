"""Files an evaluator writes beside its metrics: `<workdir>/<evaluator name>/<file>`.

The loop gives each evaluator that takes an `artefacts` argument one `Artefacts` for its own
folder. Arrays go to .npz, tables to markdown or JSON, figures to PNG (matplotlib's object API,
`matplotlib.figure.Figure`, so no global backend is switched). Only process 0 writes; the
others' calls do nothing, so evaluators need not check.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Optional

import jax
import numpy as np


class Artefacts:
  """A writer for one evaluator's folder (created on the first write)."""

  def __init__(self, directory: Optional[os.PathLike | str]):
    self.directory = None if directory is None else Path(directory)

  @property
  def enabled(self) -> bool:
    return self.directory is not None and jax.process_index() == 0

  def path(self, filename: str) -> Path:
    """Where `filename` goes (its folder created): for writers of other formats."""
    if self.directory is None:
      raise ValueError('this evaluator was built without an artefact folder')
    path = self.directory / filename
    path.parent.mkdir(parents=True, exist_ok=True)
    return path

  def arrays(self, filename: str, **arrays: Any) -> Optional[Path]:
    """numpy's .npz of the named arrays."""
    if not self.enabled:
      return None
    path = self.path(filename)
    np.savez(path, **{k: np.asarray(v) for k, v in arrays.items()})
    return path

  def json(self, filename: str, value: Any) -> Optional[Path]:
    if not self.enabled:
      return None
    path = self.path(filename)
    path.write_text(json.dumps(value, indent=2, default=_jsonable))
    return path

  def text(self, filename: str, text: str) -> Optional[Path]:
    """Markdown or any other text."""
    if not self.enabled:
      return None
    path = self.path(filename)
    path.write_text(text)
    return path

  def figure(self, filename: str, figure, dpi: int = 110) -> Optional[Path]:
    """A `matplotlib.figure.Figure` as PNG."""
    if not self.enabled:
      return None
    path = self.path(filename)
    figure.savefig(path, dpi=dpi)
    return path


def new_figure(**kwargs):
  """A matplotlib Figure that needs no pyplot and no backend (e.g. `new_figure(figsize=(5, 4))`)."""
  from matplotlib.figure import Figure  # pylint: disable=import-outside-toplevel
  return Figure(**kwargs)


def _jsonable(value: Any) -> Any:
  """numpy scalars and arrays in JSON."""
  if isinstance(value, np.generic):
    return value.item()
  if isinstance(value, np.ndarray):
    return value.tolist()
  return str(value)
