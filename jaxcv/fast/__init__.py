"""Fast CIFAR training: the airbench94 recipe as jaxcv pieces (arXiv 2404.00498).

Importing this package registers the 'airbench' task (Lookahead, alternating flip) and the
'altflip' / 'translate' augmentation ops; `configs/fast_cifar10/airbench94.py` imports it.
`jaxcv.fast.timed.run_timed` runs a config with compilation kept out of the clock, the way
airbench's own timer excludes its warmup run.
"""

from jaxcv.fast import augment, task  # noqa: F401 - registrations.
