"""Figures for feature visualisations (matplotlib object API, no global backend state)."""

from __future__ import annotations

from typing import Mapping, Optional, Sequence

import numpy as np
from matplotlib.figure import Figure

from jaxcv.featviz.optimize import display_alpha


def clip_percentile(images: np.ndarray, percentile: float = 1.0) -> np.ndarray:
  """Xplique's display clip: each image stretched between its `percentile` and 100-`percentile`."""
  images = np.asarray(images, np.float64)
  flat = images.reshape(len(images), -1)
  lo = np.percentile(flat, percentile, axis=1)[:, None, None, None]
  hi = np.percentile(flat, 100 - percentile, axis=1)[:, None, None, None]
  return np.clip((images - lo) / np.maximum(hi - lo, 1e-12), 0, 1)


def grid_figure(rows: Mapping[str, np.ndarray], column_titles: Sequence[str] = (),
                alphas: Optional[Mapping[str, np.ndarray]] = None, cell: float = 1.1) -> Figure:
  """One row of images per entry of `rows` ({label: [T, H, W, 3]}); with `alphas` ({label:
  [T, H, W]} accumulated gradients) each image is shown with its display α as transparency over
  white, as Xplique's MACO figures."""
  labels = list(rows)
  num_cols = max(len(v) for v in rows.values())
  fig = Figure(figsize=(cell * num_cols + 1.2, cell * len(labels) + 0.4))
  axes = fig.subplots(len(labels), num_cols, squeeze=False)
  for r, label in enumerate(labels):
    images = clip_percentile(rows[label])
    if alphas is not None:
      alpha = display_alpha(alphas[label])[..., None]
      images = images * alpha + (1 - alpha)
    for c in range(num_cols):
      ax = axes[r, c]
      ax.set_xticks([])
      ax.set_yticks([])
      if c < len(images):
        ax.imshow(images[c], interpolation='nearest')
      if r == 0 and c < len(column_titles):
        ax.set_title(str(column_titles[c]), fontsize=7)
    axes[r, 0].set_ylabel(label, fontsize=8)
  fig.tight_layout(pad=0.3)
  return fig


LINE_STYLES = ('-', '--', ':', '-.')


def spectra_figure(spectra: Mapping[str, np.ndarray], reference: np.ndarray,
                   reference_label: str = 'data',
                   styles: Optional[Mapping[str, dict]] = None) -> Figure:
  """Radial power spectra (log-log) against the data's; `styles` maps a label to matplotlib
  line keywords (e.g. one colour per parameterisation, one line style per model)."""
  fig = Figure(figsize=(5.5, 4))
  ax = fig.subplots()
  freqs = np.arange(len(reference))[1:]
  ax.loglog(freqs, np.asarray(reference)[1:], 'k-', linewidth=2.5, label=reference_label)
  for label, power in spectra.items():
    ax.loglog(freqs, np.asarray(power)[1:], label=label, **(styles or {}).get(label, {}))
  ax.set_xlabel('radial frequency (cycles / image)')
  ax.set_ylabel('mean power')
  ax.legend(fontsize=7)
  fig.tight_layout()
  return fig


def save(fig: Figure, path: str) -> None:
  fig.savefig(path, dpi=110)
