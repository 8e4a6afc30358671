"""PyTorch twins of jaxcv models, used as references in the benchmarks.

`resnet18_cifar` matches `jaxcv.models.ResNet18` with stem='cifar' layer for
layer (the kuangliu CIFAR ResNet-18: 3x3 stem, stride 1, no max-pool,
BasicBlocks [2, 2, 2, 2], 1x1 conv + BN projection shortcuts, bias-free convs,
a biased linear head): 11,173,962 parameters for 10 classes.

torch is imported inside the functions so that importing this module (and the
rest of `benchmarks/`) works on machines without PyTorch.
"""

from __future__ import annotations


def resnet18_cifar(num_classes: int = 10):
  """CIFAR ResNet-18 as in `jaxcv.models.build_model('resnet18', ...)`.

  Weights use torchvision's init (kaiming-normal fan_out for convs, BN weight
  1 / bias 0) like jaxcv; normalisation of the [0, 1] input is left to the
  caller, as benchmarks feed normalised or raw tensors alike.
  """
  import torch
  from torch import nn

  class BasicBlock(nn.Module):

    def __init__(self, in_channels: int, channels: int, stride: int):
      super().__init__()
      self.conv1 = nn.Conv2d(in_channels, channels, 3, stride, 1, bias=False)
      self.bn1 = nn.BatchNorm2d(channels)
      self.conv2 = nn.Conv2d(channels, channels, 3, 1, 1, bias=False)
      self.bn2 = nn.BatchNorm2d(channels)
      self.shortcut = nn.Sequential()
      if stride != 1 or in_channels != channels:
        self.shortcut = nn.Sequential(
            nn.Conv2d(in_channels, channels, 1, stride, bias=False),
            nn.BatchNorm2d(channels))

    def forward(self, x):
      h = torch.relu(self.bn1(self.conv1(x)))
      h = self.bn2(self.conv2(h))
      return torch.relu(h + self.shortcut(x))

  class ResNet18(nn.Module):

    def __init__(self):
      super().__init__()
      self.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
      self.bn1 = nn.BatchNorm2d(64)
      layers, in_channels = [], 64
      for i, channels in enumerate((64, 128, 256, 512)):
        for j in range(2):
          stride = 2 if i > 0 and j == 0 else 1
          layers.append(BasicBlock(in_channels, channels, stride))
          in_channels = channels
      self.layers = nn.Sequential(*layers)
      self.head = nn.Linear(512, num_classes)
      for m in self.modules():
        if isinstance(m, nn.Conv2d):
          nn.init.kaiming_normal_(m.weight, mode='fan_out', nonlinearity='relu')

    def forward(self, x):
      h = torch.relu(self.bn1(self.conv1(x)))
      h = self.layers(h)
      return self.head(torch.flatten(torch.mean(h, dim=(2, 3)), 1))

  return ResNet18()


def num_params(module) -> int:
  """Trainable parameter count of a torch module."""
  return sum(p.numel() for p in module.parameters() if p.requires_grad)
