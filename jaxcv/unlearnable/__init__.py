"""Convolution-based unlearnable datasets and the COIN defense (arXiv 2311.18403).

- convolution.py: the CUDA generator (class-wise random filters) and the VUDA / HUDA variants.
- coin.py: COIN, a batched on-device random bilinear pixel displacement; augment.py: the 'coin'
  augmentation op.
- datasets.py: poisoned (and JPEG-compressed) training sets by name, e.g. 'cuda:cifar10'.
- operators.py: the Θ_imi / Θ_imc proxies of the effective per-sample operators.
- report.py: the results table and bar plot; sweep.py: runs a table's rows in one process.
Experiments: configs/coin/; the paper page: docs/coin.md.
"""

from jaxcv.unlearnable import augment, coin, convolution, datasets, operators  # Registrations.
from jaxcv.unlearnable.coin import coin as coin_transform
from jaxcv.unlearnable.convolution import class_kernels, poison
from jaxcv.unlearnable.operators import theta_metrics, unlearnable_theta
