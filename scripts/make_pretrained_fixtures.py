"""Writes tests/fixtures/pretrained/: PyTorch networks' layouts, inputs and outputs.

Needs PyTorch, torchvision, timm and diffusers, which jaxcv itself never imports:

    python3 -m venv /tmp/torchenv && /tmp/torchenv/bin/pip install torch torchvision timm diffusers
    /tmp/torchenv/bin/python scripts/make_pretrained_fixtures.py tests/fixtures/pretrained

For each case: the real architecture (torchvision's resnet18/resnet50 with 10 classes, timm's
VisionTransformer: a tiny one, ViT-S/16 and a head-less one as DINO saves it; diffusers'
AutoencoderKL and UNet2DConditionModel in SD's design with two narrow levels), weights drawn from
a seed by tests/pretrained_weights.py (numpy; the tests draw the same ones), a random input and
PyTorch's float32 outputs in eval mode. `<case>.json` holds the state-dict layout and the
converter kind; `<case>.npz` the input (NHWC, as jaxcv takes it) and the outputs.
"""

import json
import sys
from pathlib import Path

import numpy as np
import diffusers
import timm
import torch
import torchvision

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / 'tests'))
from pretrained_weights import synthetic_state_dict  # pylint: disable=wrong-import-position


def tiny_vit(num_classes):
  return timm.models.vision_transformer.VisionTransformer(
      img_size=32, patch_size=8, embed_dim=48, depth=2, num_heads=3, mlp_ratio=4.0,
      num_classes=num_classes)


# name -> (network, input NCHW shape, converter spec, seed)
CASES = {
    'torchvision_resnet18': (lambda: torchvision.models.resnet18(num_classes=10), (2, 3, 32, 32),
                             'torchvision_resnet', 0),
    'torchvision_resnet50': (lambda: torchvision.models.resnet50(num_classes=10), (1, 3, 32, 32),
                             'torchvision_resnet', 1),
    'timm_vit_tiny': (lambda: tiny_vit(10), (2, 3, 32, 32), 'timm_vit(num_heads=3)', 2),
    'timm_vit_small_patch16_224': (
        lambda: timm.create_model('vit_small_patch16_224', pretrained=False, num_classes=10),
        (1, 3, 224, 224), 'timm_vit', 3),
    'dino_vit_tiny': (lambda: tiny_vit(0), (2, 3, 32, 32), 'timm_vit(num_heads=3)', 4),
}


def main(out_dir: str) -> None:
  out = Path(out_dir)
  out.mkdir(parents=True, exist_ok=True)
  torch.set_grad_enabled(False)
  for name, (build, input_shape, kind, seed) in CASES.items():
    net = build().eval()
    layout = [{'key': k, 'shape': list(v.shape), 'dtype': str(v.dtype).replace('torch.', '')}
              for k, v in net.state_dict().items()]
    weights = synthetic_state_dict(layout, seed)
    net.load_state_dict({k: torch.from_numpy(v) for k, v in weights.items()})
    image = np.random.default_rng(1000 + seed).standard_normal(input_shape).astype(np.float32)
    outputs = net(torch.from_numpy(image)).numpy()
    with open(out / f'{name}.json', 'w') as f:
      json.dump({'kind': kind, 'seed': seed, 'torch': torch.__version__,
                 'torchvision': torchvision.__version__, 'timm': timm.__version__,
                 'outputs': 'logits' if outputs.shape[-1] == 10 else 'features',
                 'layout': layout}, f, indent=0)
    np.savez_compressed(out / f'{name}.npz', image=image.transpose(0, 2, 3, 1), outputs=outputs)
    print(name, outputs.shape, float(np.abs(outputs).max()))
  write_autoencoder(out)
  write_unet(out)


def write_autoencoder(out: Path, name: str = 'diffusers_autoencoder_kl', seed: int = 5) -> None:
  """SD's VAE design at two levels of width 32/64: latents' mean and log-variance of a [0, 1]
  image, and the decoded mean back in [0, 1] (diffusers works in [-1, 1])."""
  vae = diffusers.AutoencoderKL(
      in_channels=3, out_channels=3, down_block_types=('DownEncoderBlock2D',) * 2,
      up_block_types=('UpDecoderBlock2D',) * 2, block_out_channels=(32, 64), layers_per_block=1,
      latent_channels=4, norm_num_groups=32, sample_size=16).eval()
  layout = [{'key': k, 'shape': list(v.shape), 'dtype': str(v.dtype).replace('torch.', '')}
            for k, v in vae.state_dict().items()]
  weights = synthetic_state_dict(layout, seed)
  vae.load_state_dict({k: torch.from_numpy(v) for k, v in weights.items()})
  image = np.random.default_rng(1000 + seed).uniform(0, 1, (1, 3, 16, 16)).astype(np.float32)
  posterior = vae.encode(torch.from_numpy(image) * 2 - 1).latent_dist
  decoded = (vae.decode(posterior.mean).sample + 1) / 2
  with open(out / f'{name}.json', 'w') as f:
    json.dump({'kind': 'diffusers_autoencoder_kl', 'seed': seed, 'torch': torch.__version__,
               'diffusers': diffusers.__version__, 'outputs': 'latent mean', 'layout': layout},
              f, indent=0)
  np.savez_compressed(out / f'{name}.npz', image=image.transpose(0, 2, 3, 1),
                      outputs=posterior.mean.numpy().transpose(0, 2, 3, 1),
                      logvar=posterior.logvar.numpy().transpose(0, 2, 3, 1),
                      decoded=decoded.numpy().transpose(0, 2, 3, 1))
  print(name, float(posterior.mean.abs().max()), float(decoded.abs().max()))


def write_unet(out: Path, name: str = 'diffusers_unet', seed: int = 6) -> None:
  """SD-1.5's UNet design (cross-attention down block, plain down block, mid block with
  cross-attention, mirrored up blocks) at widths 32/64, 4 heads, a 16-dim context: its noise
  prediction for 8x8x4 latents at two timesteps."""
  unet = diffusers.UNet2DConditionModel(
      sample_size=8, in_channels=4, out_channels=4, layers_per_block=1,
      block_out_channels=(32, 64), down_block_types=('CrossAttnDownBlock2D', 'DownBlock2D'),
      up_block_types=('UpBlock2D', 'CrossAttnUpBlock2D'), cross_attention_dim=16,
      attention_head_dim=4, norm_num_groups=32).eval()
  layout = [{'key': k, 'shape': list(v.shape), 'dtype': str(v.dtype).replace('torch.', '')}
            for k, v in unet.state_dict().items()]
  weights = synthetic_state_dict(layout, seed)
  unet.load_state_dict({k: torch.from_numpy(v) for k, v in weights.items()})
  rng = np.random.default_rng(1000 + seed)
  latents = rng.standard_normal((2, 4, 8, 8)).astype(np.float32)
  context = rng.standard_normal((2, 5, 16)).astype(np.float32)
  timesteps = np.array([10, 500], np.int64)
  outputs = unet(torch.from_numpy(latents), torch.from_numpy(timesteps),
                 encoder_hidden_states=torch.from_numpy(context)).sample.numpy()
  with open(out / f'{name}.json', 'w') as f:
    json.dump({'kind': 'diffusers_unet(num_heads=4)', 'seed': seed, 'torch': torch.__version__,
               'diffusers': diffusers.__version__, 'outputs': 'noise prediction',
               'layout': layout}, f, indent=0)
  np.savez_compressed(out / f'{name}.npz', image=latents.transpose(0, 2, 3, 1),
                      timesteps=timesteps, context=context,
                      outputs=outputs.transpose(0, 2, 3, 1))
  print(name, float(np.abs(outputs).max()))


if __name__ == '__main__':
  main(sys.argv[1])
