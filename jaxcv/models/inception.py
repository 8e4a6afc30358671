"""The Inception-v3 network of the FID metric (Heusel et al. 2017), in Flax, with its weight loader.

FID is defined by one particular network: the 2015-12-05 TensorFlow Inception graph. pytorch-fid
(github.com/mseitzer/pytorch-fid, `inception.py`) ports it as torchvision's Inception3 with four
patched blocks, and its weight file `pt_inception-2015-12-05-6726825d.pth` is the de-facto
standard. This module mirrors that port layer for layer, with the same module names, so the
PyTorch state dict maps onto the Flax variables key by key:

- FIDInceptionA / FIDInceptionC / FIDInceptionE_1: the pooling branch averages without counting
  the zero padding (TensorFlow's average pool), `count_include_pad=False`;
- FIDInceptionE_2 (Mixed_7c): the pooling branch is a 3x3 *max* pool (a bug in the TF graph that
  FID inherited);
- a 1008-way `fc` (the TF graph's classes), kept so the whole file loads; FID uses the 2048-d
  pool-3 features before it.

Input handling follows pytorch-fid's defaults: images in [0, 1], resized to 299x299 bilinearly
(`align_corners=False`, no antialiasing), then scaled to [-1, 1]. 23,850,960 parameters.

The weights are not shipped (no downloads at run time): `load_fid_inception` finds the file, or
raises `InceptionWeightsNotFoundError` naming it and where it comes from.
`scripts/convert_fid_inception_weights.py` turns the .pth into an .npz for machines without torch.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxcv.errors import UserError

FID_WEIGHTS_FILE = 'pt_inception-2015-12-05-6726825d.pth'
FID_WEIGHTS_URL = ('https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/'
                   + FID_WEIGHTS_FILE)
WEIGHTS_ENV = 'JAXCV_FID_INCEPTION_WEIGHTS'
FEATURE_DIM = 2048
INPUT_SIZE = 299


class InceptionWeightsNotFoundError(UserError):
  """The FID Inception weight file is not where it was looked for."""


Padding = tuple[tuple[int, int], tuple[int, int]]


def _pad(kernel: Sequence[int]) -> Padding:
  """PyTorch's symmetric 'same' padding for odd kernels, as (1, 7) -> ((0, 0), (3, 3))."""
  return tuple((k // 2, k // 2) for k in kernel)


class BasicConv2d(nn.Module):
  """Conv (no bias) -> BatchNorm (eps 1e-3, inference statistics) -> ReLU, as torchvision's."""
  features: int
  kernel: tuple[int, int] = (1, 1)
  strides: tuple[int, int] = (1, 1)
  padding: Any = 'VALID'
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    x = nn.Conv(self.features, self.kernel, self.strides, padding=self.padding, use_bias=False,
                dtype=self.dtype, param_dtype=jnp.float32, name='conv')(x)
    x = nn.BatchNorm(use_running_average=True, epsilon=1e-3, dtype=self.dtype,
                     param_dtype=jnp.float32, name='bn')(x)
    return nn.relu(x)


def _avg_pool_same(x):
  """3x3 stride-1 average that ignores the padding (TensorFlow's; the FID blocks' patch)."""
  return nn.avg_pool(x, (3, 3), (1, 1), padding=((1, 1), (1, 1)), count_include_pad=False)


class FIDInceptionA(nn.Module):
  pool_features: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    conv = lambda f, k, name: BasicConv2d(f, k, padding=_pad(k), dtype=self.dtype, name=name)
    b1 = conv(64, (1, 1), 'branch1x1')(x)
    b5 = conv(48, (1, 1), 'branch5x5_1')(x)
    b5 = conv(64, (5, 5), 'branch5x5_2')(b5)
    b3 = conv(64, (1, 1), 'branch3x3dbl_1')(x)
    b3 = conv(96, (3, 3), 'branch3x3dbl_2')(b3)
    b3 = conv(96, (3, 3), 'branch3x3dbl_3')(b3)
    bp = conv(self.pool_features, (1, 1), 'branch_pool')(_avg_pool_same(x))
    return jnp.concatenate([b1, b5, b3, bp], axis=-1)


class InceptionB(nn.Module):
  """Grid reduction 35 -> 17 (Mixed_6a; not patched by pytorch-fid)."""
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    conv = lambda f, k, name, s=1: BasicConv2d(
        f, k, (s, s), padding=_pad(k) if s == 1 else 'VALID', dtype=self.dtype, name=name)
    b3 = conv(384, (3, 3), 'branch3x3', 2)(x)
    bd = conv(64, (1, 1), 'branch3x3dbl_1')(x)
    bd = conv(96, (3, 3), 'branch3x3dbl_2')(bd)
    bd = conv(96, (3, 3), 'branch3x3dbl_3', 2)(bd)
    bp = nn.max_pool(x, (3, 3), (2, 2))
    return jnp.concatenate([b3, bd, bp], axis=-1)


class FIDInceptionC(nn.Module):
  channels_7x7: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    c7 = self.channels_7x7
    conv = lambda f, k, name: BasicConv2d(f, k, padding=_pad(k), dtype=self.dtype, name=name)
    b1 = conv(192, (1, 1), 'branch1x1')(x)
    b7 = conv(c7, (1, 1), 'branch7x7_1')(x)
    b7 = conv(c7, (1, 7), 'branch7x7_2')(b7)
    b7 = conv(192, (7, 1), 'branch7x7_3')(b7)
    bd = conv(c7, (1, 1), 'branch7x7dbl_1')(x)
    bd = conv(c7, (7, 1), 'branch7x7dbl_2')(bd)
    bd = conv(c7, (1, 7), 'branch7x7dbl_3')(bd)
    bd = conv(c7, (7, 1), 'branch7x7dbl_4')(bd)
    bd = conv(192, (1, 7), 'branch7x7dbl_5')(bd)
    bp = conv(192, (1, 1), 'branch_pool')(_avg_pool_same(x))
    return jnp.concatenate([b1, b7, bd, bp], axis=-1)


class InceptionD(nn.Module):
  """Grid reduction 17 -> 8 (Mixed_7a; not patched by pytorch-fid)."""
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    conv = lambda f, k, name, s=1: BasicConv2d(
        f, k, (s, s), padding=_pad(k) if s == 1 else 'VALID', dtype=self.dtype, name=name)
    b3 = conv(192, (1, 1), 'branch3x3_1')(x)
    b3 = conv(320, (3, 3), 'branch3x3_2', 2)(b3)
    b7 = conv(192, (1, 1), 'branch7x7x3_1')(x)
    b7 = conv(192, (1, 7), 'branch7x7x3_2')(b7)
    b7 = conv(192, (7, 1), 'branch7x7x3_3')(b7)
    b7 = conv(192, (3, 3), 'branch7x7x3_4', 2)(b7)
    bp = nn.max_pool(x, (3, 3), (2, 2))
    return jnp.concatenate([b3, b7, bp], axis=-1)


class FIDInceptionE(nn.Module):
  """Mixed_7b (`pool='avg'`, FIDInceptionE_1) and Mixed_7c (`pool='max'`, FIDInceptionE_2)."""
  pool: str = 'avg'
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    conv = lambda f, k, name: BasicConv2d(f, k, padding=_pad(k), dtype=self.dtype, name=name)
    b1 = conv(320, (1, 1), 'branch1x1')(x)
    b3 = conv(384, (1, 1), 'branch3x3_1')(x)
    b3 = jnp.concatenate([conv(384, (1, 3), 'branch3x3_2a')(b3),
                          conv(384, (3, 1), 'branch3x3_2b')(b3)], axis=-1)
    bd = conv(448, (1, 1), 'branch3x3dbl_1')(x)
    bd = conv(384, (3, 3), 'branch3x3dbl_2')(bd)
    bd = jnp.concatenate([conv(384, (1, 3), 'branch3x3dbl_3a')(bd),
                          conv(384, (3, 1), 'branch3x3dbl_3b')(bd)], axis=-1)
    if self.pool == 'avg':
      pooled = _avg_pool_same(x)
    else:
      pooled = nn.max_pool(x, (3, 3), (1, 1), padding=((1, 1), (1, 1)))
    bp = conv(192, (1, 1), 'branch_pool')(pooled)
    return jnp.concatenate([b1, b3, bd, bp], axis=-1)


def resize_bilinear(images: jax.Array, size: int) -> jax.Array:
  """As torch's `F.interpolate(mode='bilinear', align_corners=False)`: no antialiasing."""
  n, h, w, c = images.shape
  if (h, w) == (size, size):
    return images
  return jax.image.resize(images, (n, size, size, c), 'bilinear', antialias=False)


class FIDInceptionV3(nn.Module):
  """pytorch-fid's `InceptionV3(output_blocks=[3])`: [0, 1] NHWC images -> [N, 2048] pool-3.

  Grey images (1 channel) are repeated to RGB. `resize_input=False` skips the resize to 299
  (inputs must then be at least 75x75). `return_logits=True` also returns the 1008-way logits.
  Features are float32 whatever the compute dtype.
  """
  resize_input: bool = True
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, *, return_logits: bool = False):
    x = jnp.asarray(x, jnp.float32)
    if x.shape[-1] == 1:
      x = jnp.repeat(x, 3, axis=-1)
    if self.resize_input:
      x = resize_bilinear(x, INPUT_SIZE)
    x = (2.0 * x - 1.0).astype(self.dtype)
    conv = lambda f, k, name, s=1, p='VALID': BasicConv2d(f, k, (s, s), p, self.dtype, name=name)
    # Block 0: to the first max pool.
    x = conv(32, (3, 3), 'Conv2d_1a_3x3', 2)(x)
    x = conv(32, (3, 3), 'Conv2d_2a_3x3')(x)
    x = conv(64, (3, 3), 'Conv2d_2b_3x3', 1, _pad((3, 3)))(x)
    x = nn.max_pool(x, (3, 3), (2, 2))
    # Block 1: to the second max pool.
    x = conv(80, (1, 1), 'Conv2d_3b_1x1')(x)
    x = conv(192, (3, 3), 'Conv2d_4a_3x3')(x)
    x = nn.max_pool(x, (3, 3), (2, 2))
    # Block 2: 35x35 and 17x17 Inception blocks.
    for name, pool_features in (('Mixed_5b', 32), ('Mixed_5c', 64), ('Mixed_5d', 64)):
      x = FIDInceptionA(pool_features, self.dtype, name=name)(x)
    x = InceptionB(self.dtype, name='Mixed_6a')(x)
    for name, c7 in (('Mixed_6b', 128), ('Mixed_6c', 160), ('Mixed_6d', 160), ('Mixed_6e', 192)):
      x = FIDInceptionC(c7, self.dtype, name=name)(x)
    # Block 3: 8x8 blocks and the global average pool.
    x = InceptionD(self.dtype, name='Mixed_7a')(x)
    x = FIDInceptionE('avg', self.dtype, name='Mixed_7b')(x)
    x = FIDInceptionE('max', self.dtype, name='Mixed_7c')(x)
    features = jnp.mean(x.astype(jnp.float32), axis=(1, 2))
    # Always applied, so that `init` creates the whole state dict's parameters.
    logits = nn.Dense(1008, dtype=jnp.float32, param_dtype=jnp.float32, name='fc')(features)
    return (features, logits) if return_logits else features


# ------------------------------------------------------------------ weights


@functools.lru_cache(maxsize=1)
def abstract_variables() -> dict:
  """Shapes of {'params', 'batch_stats'} without computing anything (75x75 dummy input).

  The same for every `resize_input` and `dtype` (parameters are float32).
  """
  dummy = jax.ShapeDtypeStruct((1, 75, 75, 3), jnp.float32)
  return jax.eval_shape(lambda x: FIDInceptionV3().init(jax.random.key(0), x), dummy)


def _torch_entries(variables: Mapping[str, Any]):
  """(state-dict key, collection, flax path, to_torch, from_torch) for every variable."""
  for collection, tree in variables.items():
    for path, _ in jax.tree_util.tree_flatten_with_path(tree)[0]:
      names = [p.key for p in path]
      *modules, leaf = names
      prefix = '.'.join(modules)
      if modules[-1] == 'fc':
        # Dense kernel [in, out] <-> Linear weight [out, in].
        key = f'{prefix}.{"weight" if leaf == "kernel" else "bias"}'
        transform = (np.transpose, np.transpose) if leaf == 'kernel' else (None, None)
      elif leaf == 'kernel':  # Conv [kh, kw, in, out] <-> [out, in, kh, kw].
        key = f'{prefix}.weight'
        transform = (lambda a: np.transpose(a, (3, 2, 0, 1)),
                     lambda a: np.transpose(a, (2, 3, 1, 0)))
      else:
        key = prefix + '.' + {'scale': 'weight', 'bias': 'bias', 'mean': 'running_mean',
                              'var': 'running_var'}[leaf]
        transform = (None, None)
      yield key, collection, tuple(names), transform


def state_dict_from_variables(variables: Mapping[str, Any]) -> dict[str, np.ndarray]:
  """The pytorch-fid state dict (without `num_batches_tracked`) of Flax variables."""
  state = {}
  for key, collection, names, (to_torch, _) in _torch_entries(variables):
    value = np.asarray(_get(variables[collection], names), np.float32)
    state[key] = to_torch(value) if to_torch else value
  return state


def variables_from_state_dict(state: Mapping[str, Any]) -> dict:
  """Flax {'params', 'batch_stats'} from a pytorch-fid state dict (numpy arrays).

  Every expected key must be present with the expected shape; `num_batches_tracked` entries
  are ignored; any other extra key is an error (a different network's file).
  """
  target = abstract_variables()
  variables: dict = {}
  missing, wrong = [], []
  used = set()
  for key, collection, names, (_, from_torch) in _torch_entries(target):
    if key not in state:
      missing.append(key)
      continue
    used.add(key)
    value = np.asarray(state[key], np.float32)
    value = from_torch(value) if from_torch else value
    expected = _get(target[collection], names).shape
    if value.shape != expected:
      wrong.append(f'{key}: file {value.shape}, network {expected}')
      continue
    _set(variables.setdefault(collection, {}), names, jnp.asarray(value))
  extra = sorted(k for k in state if k not in used and not k.endswith('num_batches_tracked'))
  if missing or wrong or extra:
    raise UserError(
        'the file is not the FID Inception-v3 state dict: '
        + '; '.join(f'{what} ({len(items)}): {", ".join(items[:3])}'
                    for what, items in (('missing', missing), ('wrong shape', wrong),
                                        ('unexpected', extra)) if items))
  return variables


def _get(tree, names):
  for name in names:
    tree = tree[name]
  return tree


def _set(tree, names, value):
  for name in names[:-1]:
    tree = tree.setdefault(name, {})
  tree[names[-1]] = value


def find_weights(path: Optional[str | os.PathLike] = None) -> Path:
  """The weight file: `path`, else $JAXCV_FID_INCEPTION_WEIGHTS, else the usual places.

  The usual places are `$JAXCV_DATA_DIR/` and torch hub's cache (where pytorch-fid downloads
  it), looking for the .pth and for an .npz conversion of it.
  """
  if path:
    candidates = [Path(path).expanduser()]
  elif os.environ.get(WEIGHTS_ENV):
    candidates = [Path(os.environ[WEIGHTS_ENV]).expanduser()]
  else:
    folders = []
    if os.environ.get('JAXCV_DATA_DIR'):
      folders.append(Path(os.environ['JAXCV_DATA_DIR']).expanduser())
    torch_home = Path(os.environ.get('TORCH_HOME', Path.home() / '.cache' / 'torch'))
    folders.append(torch_home.expanduser() / 'hub' / 'checkpoints')
    stem = FID_WEIGHTS_FILE[:-len('.pth')]
    candidates = [folder / f'{stem}{ext}' for folder in folders for ext in ('.pth', '.npz')]
  for candidate in candidates:
    if candidate.is_file():
      return candidate
  raise InceptionWeightsNotFoundError(
      f'FID Inception-v3 weights not found (looked for {", ".join(map(str, candidates))}). '
      f'FID needs pytorch-fid\'s {FID_WEIGHTS_FILE} (from {FID_WEIGHTS_URL}); put it in one of '
      f'those places or set {WEIGHTS_ENV}=/path/to/it (.pth needs torch; an .npz made by '
      'scripts/convert_fid_inception_weights.py does not). Without it, use a classifier '
      "feature space: feature_space='classifier:<checkpoint>'.")


def read_state_dict(path: str | os.PathLike) -> dict[str, np.ndarray]:
  """A .pth (through torch) or .npz state dict as numpy arrays."""
  path = Path(path)
  if path.suffix == '.npz':
    with np.load(path) as data:
      return {k: data[k] for k in data.files}
  try:
    import torch  # pylint: disable=import-outside-toplevel
  except ImportError as e:
    raise UserError(f'reading {path} needs torch; convert it to .npz on a machine with torch '
                    'with scripts/convert_fid_inception_weights.py') from e
  state = torch.load(path, map_location='cpu', weights_only=True)
  return {k: v.detach().cpu().numpy() for k, v in state.items()}


def load_fid_inception(path: Optional[str | os.PathLike] = None, *, dtype: Any = jnp.float32
                      ) -> tuple[FIDInceptionV3, dict]:
  """(model, variables) of the FID network; `path` as in `find_weights`."""
  model = FIDInceptionV3(dtype=dtype)
  return model, variables_from_state_dict(read_state_dict(find_weights(path)))
