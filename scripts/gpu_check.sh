#!/usr/bin/env bash
# The foundation's GPU check: the quickstart and a CIFAR-10 ResNet-18 run, with their summaries.
# Expects the staged .device/ folder (../shared/device/stage.sh cifar10-jpeg.tar.gz) and writes
# summaries, metrics and curves to $OUT (default: runs/gpu_check).
#   bash scripts/gpu_check.sh [resnet18-epochs]
set -uo pipefail
OUT=${OUT:-runs/gpu_check}
EPOCHS=${1:-30}
mkdir -p "$OUT"
if [ -d .device/wheels ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site \
    .device/wheels/*.whl || exit 1
  export PYTHONPATH=/tmp/site:$PWD JAXCV_DATA_DIR=$PWD/.device/data
fi
export PYTHONUNBUFFERED=1
nvidia-smi -L 2>/dev/null
python3 -c 'import jax, flax; print("jax", jax.__version__, "flax", flax.__version__, jax.devices())'
for run in "quickstart configs/quickstart.py" "resnet18 configs/cifar10/resnet18.py:epochs=$EPOCHS"; do
  set -- $run
  start=$(date +%s)
  python3 -m jaxcv.main --config "$2" --workdir "/tmp/gpu_check/$1" --config.progress_bar=false \
    2>&1 \
    | tee -a "$OUT/log.txt" | tail -40
  echo "$1: $(( $(date +%s) - start )) s wall including data loading and compilation" | tee -a "$OUT/log.txt"
  for f in summary.json metrics.png metrics.jsonl; do cp "/tmp/gpu_check/$1/$f" "$OUT/$1_$f" 2>/dev/null; done
done
