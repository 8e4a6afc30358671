#!/usr/bin/env bash
# Performance benchmarks against PyTorch on one GPU, all in one call (benchmarks/):
#   resnet18_throughput  torch eager / torch.compile / plain Flax / jaxcv step and variants,
#                        plus a jax.profiler trace of the jaxcv step (-> profile_summary)
#   fast_cifar10         configs/fast_cifar10/airbench94.py vs the airbench94 package, 2 runs each
#   eval_throughput      ResNet-18 over 10k test images, torch vs the jaxcv evaluator
# The drivers and their workers run one at a time: on 2026-11-26 (H200) running them concurrently
# left every JAX worker compiling and autotuning past its time cap, with nothing measured.
# Writes $OUT/perf/{*.json,*.log,RESULTS.md,trace/}; RESULTS.md is rendered from the JSON.
#
# Needs the airbench package importable: run_all.sh installs .device_extra/wheels/*.whl (the
# airbench wheel is staged there and in .device/extra); this script also falls back to those.
#   OUT=/some/dir bash scripts/gpu/perf.sh            # ~5 min on one H200 with every variant
#   SMOKE=1 OUT=/tmp/out_perf bash scripts/gpu/perf.sh  # tiny shapes on a CPU (slow: minutes)
#   PARTS="fast_cifar10" OUT=... bash scripts/gpu/perf.sh   # a subset
#   RESNET_VARIANTS=jaxcv,torch_eager,torch_compile FAST_RUNS=3 ...  # fewer rows, more runs
set -uo pipefail
PY=${PYTHON:-python3}
DIR=${OUT:-runs/gpu}/perf
mkdir -p "$DIR"
BUDGET=${BUDGET_PERF_INNER:-330}
T_TRAIN=60 T_FAST=70 T_EVAL=60 PAR=1  # Per-worker caps (s); one worker on the GPU at a time.
if [ "${SMOKE:-0}" = 1 ]; then  # A CPU is 10-100x slower at compiling and running.
  BUDGET=${BUDGET_PERF_INNER:-1800} T_TRAIN=1700 T_FAST=1700 T_EVAL=1700 PAR=2
fi
PARTS=${PARTS:-"resnet18_throughput fast_cifar10 eval_throughput"}
start=$(date +%s)
export BENCH_DEADLINE=$((start + BUDGET - 8))  # Drivers stop starting/keep no worker past it.
export BENCH_LOCK="$DIR/.gpu.lock"
# Several JAX processes share the GPU: no 75% preallocation each.
export XLA_PYTHON_CLIENT_MEM_FRACTION=${XLA_PYTHON_CLIENT_MEM_FRACTION:-0.13}
export JAX_CACHE_DIR=${JAX_CACHE_DIR:-/tmp/jax_compile_cache}  # Reruns on a warm machine.
export PYTHONUNBUFFERED=1

if ! "$PY" -c 'import airbench' 2>/dev/null; then
  for whl in .device_extra/wheels/airbench-*.whl .device/extra/airbench-*.whl; do
    [ -f "$whl" ] || continue
    "$PY" -m pip install -q --no-index --no-deps --no-compile --target /tmp/airbench_site "$whl" \
      && export PYTHONPATH=/tmp/airbench_site${PYTHONPATH:+:$PYTHONPATH} && break
  done
fi
"$PY" -c 'import airbench' 2>/dev/null || echo "perf: airbench not importable; its rows will fail"
echo "perf: budget ${BUDGET}s, parts: $PARTS, out $DIR, $(date -u +%H:%M:%S)"

run_part() {  # name, args...
  local name=$1; shift
  timeout --signal=TERM --kill-after=3 $((BUDGET - 4)) "$PY" -m "benchmarks.$name" --out "$DIR" "$@" \
    > "$DIR/$name.log" 2>&1
  echo "perf: $name rc=$? after $(( $(date +%s) - start )) s"
}
for part in $PARTS; do
  case $part in
    resnet18_throughput) run_part resnet18_throughput --profile --parallel $PAR --timeout $T_TRAIN \
                           ${RESNET_VARIANTS:+--variants "$RESNET_VARIANTS"} ;;
    fast_cifar10) run_part fast_cifar10 --runs "${FAST_RUNS:-2}" --timeout $T_FAST ;;
    eval_throughput) run_part eval_throughput --timeout $T_EVAL ;;
    *) echo "perf: unknown part $part" ;;
  esac
done

if [ -d "$DIR/trace" ]; then
  "$PY" -m benchmarks.profile_summary "$DIR/trace" --out "$DIR" --steps 10 \
    > "$DIR/profile_summary.log" 2>&1 || echo "perf: profile summary failed"
fi
"$PY" -m benchmarks.render_results "$DIR" --out "$DIR/RESULTS.md" > /dev/null \
  || echo "perf: rendering RESULTS.md failed"
for log in resnet18_throughput fast_cifar10 eval_throughput profile_summary; do
  [ -f "$DIR/$log.log" ] && { echo "----- $log"; grep -v '^\[' "$DIR/$log.log" | tail -n 30; }
done
echo "perf: done in $(( $(date +%s) - start )) s"
