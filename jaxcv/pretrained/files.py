"""Reading a PyTorch-ecosystem checkpoint file as {key: numpy array}, from a local path.

safetensors files are read with the `safetensors` package's numpy API (the `pretrained` extra),
`.npz` with numpy; PyTorch pickles (`.pth`, `.pt`, `.bin`, `.ckpt`) need PyTorch, imported only
here and only for them.
"""

from __future__ import annotations

import os
from typing import Any, Mapping

import numpy as np

from jaxcv.errors import ConfigError, UserError

_TORCH_SUFFIXES = ('.pth', '.pt', '.bin', '.ckpt', '.tar')
# Wrappers training scripts put around a state dict (DINO: 'teacher'; Lightning: 'state_dict').
_WRAPPERS = ('state_dict', 'model', 'teacher', 'model_ema', 'module')


class PretrainedFileError(UserError):
  """A checkpoint file that is missing or cannot be read as asked."""


def read_state_dict(path: str) -> dict[str, np.ndarray]:
  """The tensors of the checkpoint at `path`, as float32 (floating) or int64 numpy arrays."""
  path = os.path.expanduser(str(path))
  if not os.path.isfile(path):
    raise PretrainedFileError(f'pretrained checkpoint {path!r} not found (the file is read '
                              'locally; jaxcv downloads nothing: see docs/pretrained.md)')
  if path.endswith('.safetensors'):
    try:
      from safetensors.numpy import load_file  # pylint: disable=import-outside-toplevel
    except ImportError as e:
      raise PretrainedFileError(f'reading {path} needs the safetensors package: pip install '
                                "'jaxcv[pretrained]' (or safetensors)") from e
    state = load_file(path)
  elif path.endswith('.npz'):
    with np.load(path, allow_pickle=False) as f:
      state = {k: f[k] for k in f.files}
  elif path.endswith(_TORCH_SUFFIXES):
    state = _read_torch(path)
  else:
    raise PretrainedFileError(f'{path}: unknown checkpoint format; expected .safetensors, .npz '
                              f'or a PyTorch file ({", ".join(_TORCH_SUFFIXES)})')
  return {k: _numpy(k, v) for k, v in state.items()}


def _read_torch(path: str) -> Mapping[str, Any]:
  try:
    import torch  # pylint: disable=import-outside-toplevel
  except ImportError as e:
    raise PretrainedFileError(
        f'{path} is a PyTorch pickle: reading it needs PyTorch (pip install torch; jaxcv does not '
        'otherwise use it), or convert it once to .safetensors where PyTorch is installed') from e
  try:
    obj = torch.load(path, map_location='cpu', weights_only=True)
  except Exception as e:  # pylint: disable=broad-except  (pickle, zip and torch errors alike)
    raise PretrainedFileError(f'{path}: PyTorch cannot read it ({type(e).__name__}: '
                              f'{(str(e).splitlines() or [""])[0][:200]})') from e
  while isinstance(obj, Mapping) and not any(hasattr(v, 'shape') for v in obj.values()):
    inner = next((obj[w] for w in _WRAPPERS if isinstance(obj.get(w), Mapping)), None)
    if inner is None:
      raise PretrainedFileError(f'{path} holds no tensors at its top level nor under '
                                f'{"/".join(_WRAPPERS)}; its keys: {sorted(obj)[:10]}')
    obj = inner
  return {k: v.detach().cpu().float().numpy() if v.is_floating_point() else v.cpu().numpy()
          for k, v in obj.items() if hasattr(v, 'detach')}


def _numpy(key: str, value: Any) -> np.ndarray:
  value = np.asarray(value)
  if np.issubdtype(value.dtype, np.floating) or value.dtype.name == 'bfloat16':
    return value.astype(np.float32)
  if np.issubdtype(value.dtype, np.integer) or value.dtype == bool:
    return value.astype(np.int64)
  raise ConfigError(f'checkpoint tensor {key!r} has unsupported dtype {value.dtype}')


class Keys:
  """Takes tensors from a state dict by name, so that a converter can end by checking that it
  used every tensor (a checkpoint of another layout is an error, not silently half-loaded)."""

  def __init__(self, state: Mapping[str, np.ndarray], prefix: str, what: str,
               ignore: tuple[str, ...] = ()):
    if prefix:
      if not any(k.startswith(prefix) for k in state):
        raise ConfigError(f'{what}: no tensor starts with prefix {prefix!r}; keys look like '
                          f'{sorted(state)[:4]}')
      state = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    self.state = {k: v for k, v in state.items() if not k.endswith(ignore)}
    self.what = what
    self.used: set[str] = set()

  def __contains__(self, key: str) -> bool:
    return key in self.state

  def __call__(self, key: str) -> np.ndarray:
    if key not in self.state:
      raise ConfigError(f'{self.what}: the checkpoint has no tensor {key!r} (keys look like '
                        f'{sorted(self.state)[:4]}; a training wrapper\'s prefix is stripped '
                        'with the prefix= option)')
    self.used.add(key)
    return self.state[key]

  def check_all_used(self) -> None:
    unused = sorted(set(self.state) - self.used)
    if unused:
      raise ConfigError(f'{self.what}: {len(unused)} checkpoint tensors have no place in the '
                        f'jaxcv model (another layout?), e.g. {", ".join(unused[:5])}')
