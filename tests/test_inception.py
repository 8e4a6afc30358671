"""The FID Inception-v3: shapes and parameter count on abstract shapes, the state-dict loader
through a synthetic .npz, the missing-weights error, and (where torch is installed) numerical
agreement with pytorch-fid's network built from torchvision."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxcv.errors import UserError
from jaxcv.models import inception


def test_shapes_and_parameter_count():
  variables = inception.abstract_variables()
  params = variables['params']
  # torchvision's Inception3(num_classes=1008, aux_logits=False) == pytorch-fid's network.
  assert sum(math.prod(x.shape) for x in jax.tree.leaves(params)) == 23_850_960
  assert params['Mixed_7c']['branch3x3dbl_3b']['conv']['kernel'].shape == (3, 1, 384, 384)
  assert params['fc']['kernel'].shape == (2048, 1008)
  features, logits = jax.eval_shape(
      lambda v, x: inception.FIDInceptionV3().apply(v, x, return_logits=True),
      variables, jax.ShapeDtypeStruct((3, 32, 32, 3), jnp.float32))
  assert features.shape == (3, 2048) and logits.shape == (3, 1008)
  assert features.dtype == jnp.float32
  grey = jax.eval_shape(inception.FIDInceptionV3().apply, variables,
                        jax.ShapeDtypeStruct((2, 28, 28, 1), jnp.float32))
  assert grey.shape == (2, 2048)


def random_state_dict(seed=0):
  """A state dict with pytorch-fid's keys, shapes and layouts, random values."""
  rng = np.random.default_rng(seed)
  abstract = inception.abstract_variables()
  variables = jax.tree.map(lambda s: rng.normal(size=s.shape).astype(np.float32), abstract)
  variables['batch_stats'] = jax.tree.map(np.abs, variables['batch_stats'])
  state = inception.state_dict_from_variables(variables)
  # The .pth also holds BatchNorm step counters, which the loader ignores.
  state.update({k.replace('running_mean', 'num_batches_tracked'): np.array(0)
                for k in list(state) if k.endswith('running_mean')})
  return variables, state


def test_state_dict_keys_and_layouts_are_pytorch_fid_ones():
  _, state = random_state_dict()
  assert len(state) == 566  # As torchvision's Inception3 state dict (incl. 94 step counters).
  assert state['Conv2d_1a_3x3.conv.weight'].shape == (32, 3, 3, 3)  # [out, in, kh, kw]
  assert state['Mixed_6b.branch7x7_2.conv.weight'].shape == (128, 128, 1, 7)
  assert state['Mixed_5b.branch_pool.bn.running_var'].shape == (32,)
  assert state['fc.weight'].shape == (1008, 2048)  # [out, in]


def test_loader_round_trip_through_npz(tmp_path, monkeypatch):
  variables, state = random_state_dict()
  path = tmp_path / 'fid_inception.npz'
  np.savez(path, **state)
  monkeypatch.setenv(inception.WEIGHTS_ENV, str(path))
  model, loaded = inception.load_fid_inception()
  for collection in ('params', 'batch_stats'):
    jax.tree.map(np.testing.assert_array_equal, loaded[collection], variables[collection])
  assert isinstance(model, inception.FIDInceptionV3)

  del state['Mixed_6e.branch_pool.bn.weight']
  state['extra.weight'] = np.zeros(3)
  np.savez(path, **state)
  with pytest.raises(UserError, match=r'missing \(1\).*Mixed_6e.branch_pool.bn.weight.*'
                                      r'unexpected \(1\): extra.weight'):
    inception.load_fid_inception(path)


def test_missing_weights_error_names_the_file_and_its_source(tmp_path, monkeypatch):
  monkeypatch.delenv(inception.WEIGHTS_ENV, raising=False)
  monkeypatch.setenv('JAXCV_DATA_DIR', str(tmp_path))
  monkeypatch.setenv('TORCH_HOME', str(tmp_path / 'torch'))
  with pytest.raises(inception.InceptionWeightsNotFoundError) as info:
    inception.find_weights()
  message = str(info.value)
  assert inception.FID_WEIGHTS_FILE in message and inception.FID_WEIGHTS_URL in message
  assert str(tmp_path) in message
  # Found once it is there (an .npz conversion counts).
  target = tmp_path / 'pt_inception-2015-12-05-6726825d.npz'
  target.write_bytes(b'')
  assert inception.find_weights() == target


def test_resize_matches_torch_bilinear():
  torch = pytest.importorskip('torch')
  x = np.random.default_rng(0).random((2, 13, 17, 3)).astype(np.float32)
  for size in (29, 7):  # Up- and downsampling: torch does not antialias either way.
    ref = torch.nn.functional.interpolate(torch.from_numpy(x).permute(0, 3, 1, 2), (size, size),
                                          mode='bilinear', align_corners=False)
    np.testing.assert_allclose(np.asarray(inception.resize_bilinear(jnp.asarray(x), size)),
                               ref.permute(0, 2, 3, 1).numpy(), atol=1e-6)


def pytorch_fid_network():
  """pytorch-fid's `fid_inception_v3()` (its FIDInceptionA/C/E_1/E_2 patches), no weights."""
  torch = pytest.importorskip('torch')
  models = pytest.importorskip('torchvision.models.inception')
  functional = torch.nn.functional

  def pool_avg(x):
    return functional.avg_pool2d(x, 3, 1, 1, count_include_pad=False)

  class FIDInceptionA(models.InceptionA):
    def forward(self, x):
      b5 = self.branch5x5_2(self.branch5x5_1(x))
      b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
      return torch.cat([self.branch1x1(x), b5, b3, self.branch_pool(pool_avg(x))], 1)

  class FIDInceptionC(models.InceptionC):
    def forward(self, x):
      b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
      bd = self.branch7x7dbl_1(x)
      for layer in (self.branch7x7dbl_2, self.branch7x7dbl_3, self.branch7x7dbl_4,
                    self.branch7x7dbl_5):
        bd = layer(bd)
      return torch.cat([self.branch1x1(x), b7, bd, self.branch_pool(pool_avg(x))], 1)

  class FIDInceptionE(models.InceptionE):
    use_max = False

    def forward(self, x):
      b3 = self.branch3x3_1(x)
      b3 = torch.cat([self.branch3x3_2a(b3), self.branch3x3_2b(b3)], 1)
      bd = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
      bd = torch.cat([self.branch3x3dbl_3a(bd), self.branch3x3dbl_3b(bd)], 1)
      pooled = functional.max_pool2d(x, 3, 1, 1) if self.use_max else pool_avg(x)
      return torch.cat([self.branch1x1(x), b3, bd, self.branch_pool(pooled)], 1)

  class FIDInceptionE2(FIDInceptionE):
    use_max = True

  net = models.Inception3(num_classes=1008, aux_logits=False, init_weights=False)
  net.Mixed_5b, net.Mixed_5c, net.Mixed_5d = (FIDInceptionA(192, 32), FIDInceptionA(256, 64),
                                              FIDInceptionA(288, 64))
  net.Mixed_6b, net.Mixed_6c, net.Mixed_6d, net.Mixed_6e = (
      FIDInceptionC(768, 128), FIDInceptionC(768, 160), FIDInceptionC(768, 160),
      FIDInceptionC(768, 192))
  net.Mixed_7b, net.Mixed_7c = FIDInceptionE(1280), FIDInceptionE2(2048)
  return torch, net.eval()


def test_matches_pytorch_fid_network_with_the_same_weights():
  torch, net = pytorch_fid_network()
  generator = torch.Generator().manual_seed(0)
  with torch.no_grad():
    for key, value in net.state_dict().items():
      if value.dtype.is_floating_point:  # Moderate random weights keep activations O(1).
        noise = torch.randn(value.shape, generator=generator)
        value.copy_(noise.abs() + 0.5 if 'running_var' in key else
                    noise * (0.1 if key.endswith('weight') else 0.05))
  variables = inception.variables_from_state_dict(
      {k: v.numpy() for k, v in net.state_dict().items()})
  x = np.random.default_rng(1).random((2, 80, 80, 3)).astype(np.float32)
  with torch.no_grad():
    h = 2 * torch.from_numpy(x).permute(0, 3, 1, 2) - 1  # pytorch-fid's input scaling.
    for name in ('Conv2d_1a_3x3', 'Conv2d_2a_3x3', 'Conv2d_2b_3x3', 'maxpool1', 'Conv2d_3b_1x1',
                 'Conv2d_4a_3x3', 'maxpool2', 'Mixed_5b', 'Mixed_5c', 'Mixed_5d', 'Mixed_6a',
                 'Mixed_6b', 'Mixed_6c', 'Mixed_6d', 'Mixed_6e', 'Mixed_7a', 'Mixed_7b',
                 'Mixed_7c', 'avgpool'):  # pytorch-fid's blocks 0-3.
      h = getattr(net, name)(h)
    expected = h.flatten(1).numpy()
  # No resize here (80x80 keeps the CPU test fast); the resize is checked on its own above.
  got = jax.jit(inception.FIDInceptionV3(resize_input=False).apply)(variables, x)
  np.testing.assert_allclose(np.asarray(got), expected, rtol=1e-4, atol=1e-5 * np.abs(
      expected).max())
