#!/usr/bin/env bash
# The timed benchmarks one at a time, each worker alone on the GPU (no concurrent compiles or
# autotuning to disturb the timings); results land in $RES and are packed into $OUT/timings.tgz.
#   OUT=/some/dir bash scripts/gpu/timings.sh          # after run_all.sh's install lines
set -uo pipefail
FINAL=${OUT:-runs/gpu}
export OUT=${RES:-/tmp/timings} PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}
mkdir -p "$OUT/perf" "$OUT/afd" "$OUT/ldm_throughput"
step() {  # name cap command...
  local name=$1 cap=$2 t0; shift 2; t0=$(date +%s)
  echo "=== $name (cap $cap s) $(date -u +%H:%M:%S)"
  BENCH_DEADLINE=$(( $(date +%s) + cap - 5 )) timeout --signal=TERM --kill-after=5 "$cap" "$@" \
    > "$OUT/$name.log" 2>&1
  echo "=== $name rc=$? wall=$(( $(date +%s) - t0 )) s"
  grep -v 'cuda_timer\|^\s*$' "$OUT/$name.log" | grep -v '^\[' | tail -n 9 | cut -c1-190
}
step resnet18_throughput ${CAP_RESNET:-130} "$PY" -m benchmarks.resnet18_throughput --out "$OUT/perf" \
  --parallel 1 --timeout 60 --variants jaxcv,torch_eager,torch_compile,flax_plain,jaxcv_scan8
step fast_cifar10 ${CAP_FAST:-80} "$PY" -m benchmarks.fast_cifar10 --out "$OUT/perf" --runs 1 --timeout 70
step pgd_training ${CAP_PGD:-60} env BENCH_OUT="$OUT/afd" "$PY" -m benchmarks.pgd_training
step unet_training ${CAP_UNET:-100} "$PY" -m benchmarks.unet_training --out "$OUT/ldm_throughput" \
  --budget $(( ${CAP_UNET:-100} - 8 )) --parallel 1
for dir in /tmp/bench_*; do cp -r "$dir" "$OUT/workers_$(basename "$dir")" 2>/dev/null; done
mkdir -p "$FINAL" && tar czf "$FINAL/timings.tgz" -C "$(dirname "$OUT")" "$(basename "$OUT")"
