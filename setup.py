"""Packaging beyond pyproject.toml: the repository's configs/ folder ships as `jaxcv.configs`.

Users of the wheel then run every config by the path the README shows
(`--config configs/cifar10/resnet18.py`, resolved by jaxcv.config.load_module), and configs import
their siblings as a package. pyproject.toml cannot map one folder under another package's name
while also finding packages, hence this file.
"""

from setuptools import find_packages, setup

CONFIG_PACKAGES = find_packages(include=['configs', 'configs.*'])

setup(
    packages=find_packages(include=['jaxcv', 'jaxcv.*'])
    + ['jaxcv.' + name for name in CONFIG_PACKAGES],
    package_dir={'jaxcv.configs': 'configs'},
)
