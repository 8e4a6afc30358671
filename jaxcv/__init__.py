"""jaxcv: nine computer-vision papers as one JAX/Flax research toolkit.

The entry points a notebook needs are the ones `python -m jaxcv.main` uses:
    config = jaxcv.config.load('configs/quickstart.py:runlocal')
    summary = jaxcv.train.run(config, workdir)
"""

__version__ = '0.1.0'
