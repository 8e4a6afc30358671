#!/usr/bin/env bash
# SD-1.5 UNet training throughput and MFU, jaxcv vs diffusers (benchmarks/unet_training.py):
# c=320 batch 32 (the headline pair), c=128 batch 64, then one 5B (c=768, remat) step when time
# is left. Writes $OUT/ldm_throughput/{unet_training.json,log.txt}.
# Needs diffusers: staged wheels in .device_extra/wheels (run_all.sh installs them to /tmp/site;
# the benchmark also unzips them itself when diffusers is not importable).
#   OUT=/some/dir bash scripts/gpu/ldm_throughput.sh          # <= 90 s on one H200
#   SMOKE=1 OUT=/tmp/out_ldm bash scripts/gpu/ldm_throughput.sh   # tiny widths, on a CPU
set -uo pipefail
PY=${PYTHON:-python3}
DIR=${OUT:-runs/gpu}/ldm_throughput
mkdir -p "$DIR"
# The inner budget leaves 5 s of the part's cap (run_all.sh: BUDGET_ldm_throughput) for start-up.
BUDGET=$(( ${BUDGET_ldm_throughput:-90} - 5 ))
[ "${SMOKE:-0}" = 1 ] && BUDGET=900
echo "ldm_throughput: budget ${BUDGET}s, out $DIR, $(date -u +%H:%M:%S)"
timeout --signal=TERM --kill-after=3 $((BUDGET + 3)) \
  "$PY" -m benchmarks.unet_training --out "$DIR" --budget "$BUDGET" 2>&1 | tee "$DIR/log.txt"
echo "ldm_throughput: rc=${PIPESTATUS[0]} $(date -u +%H:%M:%S)"
