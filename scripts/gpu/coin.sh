#!/usr/bin/env bash
# COIN (arXiv 2311.18403) on one GPU: the paper's CIFAR-10 / ResNet-18 table in one process.
#
# Every row uses the same short schedule (configs/coin/resnet18.py protocol=short, 6 epochs:
# batch 512, SGD-Nesterov one-cycle lr 0.4, wd 5e-4, bf16); the PGD-AT row uses 4 PGD steps of
# 2.5/255 (eps 8/255) instead of 10 of 2/255, to cost ~5x rather than ~11x per epoch.
# Rows run in the table's priority order in one Python process with a persistent compilation
# cache, so rows with the same training program (clean, CUDA, JPEG, grayscale, VUDA, HUDA; all
# COIN alpha=2 rows) compile once. A row that would overrun the time budget is skipped and
# listed as such in the table. Budget: COIN_BUDGET seconds wall (default 120, under run_all.sh's
# cap) including data generation and compilation; the sweep gets COIN_BUDGET - 12 s, the table
# the rest.
#
#   bash scripts/gpu/coin.sh                       # on the GPU machine, after the install line
#   SMOKE=1 OUT=/tmp/out_coin bash scripts/gpu/coin.sh   # CPU: tiny model, shipped sample data
# Writes $OUT/coin/{log.txt,coin_table.md,coin_table.png,rows.json,theta.json,<row>_summary.json}.
set -uo pipefail
OUT=${OUT:-runs/gpu_out}
DEST="$OUT/coin"
RUNS=${COIN_RUNS:-/tmp/coin_runs}
PY=${PYTHON:-python3}
BUDGET=${COIN_BUDGET:-120}
mkdir -p "$DEST"
export PYTHONUNBUFFERED=1
start=$(date +%s)

if [ "${SMOKE:-0}" = 1 ]; then
  ARG='protocol=short,runlocal,model=resnet_tiny,dataset=cifar10_sample'
  EXTRA=(--rows clean,cuda,cuda_coin,cuda_jpeg,cuda_grayscale,cuda_mixup,cuda_pgd_at,cuda_coin_alpha1.6
         --theta --theta_size 8 --theta_samples 4 --deadline 900
         --row_arg 'cuda_pgd_at=pgd_steps=2')
  LIMIT=1000
else
  ARG='protocol=short,epochs=6'
  LIMIT=$(( BUDGET - 12 ))
  EXTRA=(--theta --deadline $(( LIMIT - 8 ))
         --row_arg 'cuda_pgd_at=pgd_steps=4,pgd_step_size=0.0098')
fi

rm -rf "$RUNS"
echo "coin: sweep (limit ${LIMIT} s) with arg $ARG"
timeout -k 5 "$LIMIT" "$PY" -m jaxcv.unlearnable.sweep --config configs/coin/resnet18.py \
    --arg "$ARG" --workdir "$RUNS" --compile_cache /tmp/coin_jax_cache "${EXTRA[@]}" \
    > "$DEST/log.txt" 2>&1
status=$?
grep -E " (row|theta|rows|skipping)|ERROR|Error" "$DEST/log.txt" | cut -c1-300
echo "coin: sweep exit $status after $(( $(date +%s) - start )) s"

timeout 10 "$PY" scripts/coin_table.py "$RUNS" --out "$DEST" || echo "coin: table failed"
for dir in "$RUNS"/*/; do
  name=$(basename "$dir")
  cp "$dir/summary.json" "$DEST/${name}_summary.json" 2>/dev/null
done
cp "$RUNS/rows.json" "$RUNS/theta.json" "$DEST/" 2>/dev/null
echo "coin: done in $(( $(date +%s) - start )) s wall; table in $DEST/coin_table.md"
