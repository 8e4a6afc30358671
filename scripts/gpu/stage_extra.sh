#!/usr/bin/env bash
# Stages the PyTorch references the GPU image lacks into .device_extra/wheels (git-ignored):
# airbench (the fast-recipe reference, an sdist built into a wheel here) and diffusers with its
# pure-Python / manylinux dependencies for Python 3.12 (the UNet reference). numpy and Pillow are
# dropped: the image has them. run_all.sh installs the staged wheels that the machine lacks.
# Run on the dev machine from the repo root, after ../shared/device/stage.sh cifar10-jpeg.tar.gz;
# then carry [".device", ".device_extra"] (about 16 MB here).
set -euo pipefail
DEST=.device_extra/wheels
PIP=${PIP:-python3 -m pip}
mkdir -p "$DEST"
$PIP wheel -q --no-deps -w "$DEST" airbench==0.1.8
$PIP download -q -d "$DEST" --python-version 3.12 --only-binary=:all: \
  --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux_2_28_x86_64 diffusers==0.42.1
rm -f "$DEST"/numpy-*.whl "$DEST"/pillow-*.whl
du -sh "$DEST"; ls "$DEST"
