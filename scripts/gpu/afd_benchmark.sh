#!/usr/bin/env bash
# PGD-10 adversarial-training throughput, jaxcv vs PyTorch (benchmarks/pgd_training.py), run on
# its own so no other job shares the GPU while it is timed. Writes $OUT/afd/.
set -uo pipefail
DIR=${OUT:-runs/gpu}/afd
mkdir -p "$DIR"
BENCH_OUT="$DIR" ${PYTHON:-python3} -m benchmarks.pgd_training
