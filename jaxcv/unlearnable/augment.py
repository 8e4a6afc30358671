"""COIN's augmentation op, `coin(alpha=2.0, wrap='legacy', quantize=True)` in a pipeline.

Registered with the data layer's augmentation ops when a pipeline first names it (the lazy index
in jaxcv/data/augment.py), e.g. 'crop(padding=4)|flip|coin(alpha=2.0,wrap="legacy")'.
"""

from __future__ import annotations

from jaxcv.data import augment as augment_lib
from jaxcv.unlearnable import coin as coin_lib


def _check_coin(alpha: float = 2.0, wrap: str = 'legacy', quantize: bool = True) -> None:
  del quantize
  coin_lib.check_options(alpha, wrap)


@augment_lib.register('coin', check=_check_coin)
def coin(rng, images, alpha: float = 2.0, wrap: str = 'legacy', quantize: bool = True):
  """COIN (arXiv 2311.18403): per-pixel bilinear displacement by U(-alpha, alpha), wrapped at the
  border ('legacy': SciPy's 'wrap' as the official code, period n-1; 'grid': period n), then
  truncated to the uint8 grid (`quantize`). See jaxcv/unlearnable/coin.py."""
  return coin_lib.coin(rng, images, alpha=alpha, wrap=wrap, quantize=quantize)
