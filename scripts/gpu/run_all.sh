#!/usr/bin/env bash
# All GPU measurements in one call: each part runs under its own wall-time cap, so one
# failure or overrun never loses the others. Stage first (from the repo root, on the dev machine):
#   ../shared/device/stage.sh cifar10-jpeg.tar.gz      # -> .device/ (ml_collections, grain wheels + data)
#   bash scripts/gpu/stage_extra.sh                   # -> .device_extra/ (airbench, diffusers wheels)
# and carry [".device", ".device_extra"]. Then on the GPU machine:
#   OUT=/some/dir bash scripts/gpu/run_all.sh        # ~11 min: timings (alone), then experiments
#   SHARED= OUT=... bash scripts/gpu/run_all.sh       # only the timings (~7 min)
#   EXCLUSIVE= OUT=... bash scripts/gpu/run_all.sh    # only the experiments (~4 min, GPU shared)
#   EXCLUSIVE= SHARED=coin OUT=... bash scripts/gpu/run_all.sh     # one part
# Budgets (seconds) can be overridden, e.g. BUDGET_coin=200.
# What is still unmeasured (issues "performance" and "LDM scaling") fits three presets, each one
# device call of under 10 minutes, each part alone on the GPU:
#   PRESET=unet OUT=... bash scripts/gpu/run_all.sh    # jaxcv vs diffusers UNet c=320 (+ c=128, 5B)
#   PRESET=perf OUT=... bash scripts/gpu/run_all.sh    # fast recipe x3, ResNet-18 rows + profile
#   PRESET=sweep OUT=... bash scripts/gpu/run_all.sh   # the CIFAR LDM width + sampling sweep
#   PRESET=tables OUT=... bash scripts/gpu/run_all.sh  # every paper's `gpu` table, one after
#     another, longest-waiting first (TABLES= to choose, BUDGET_TABLE= seconds each, default 180);
#     a part without its own scripts/gpu/<part>.sh runs `scripts/gpu/table.sh <part> <budget>`.
#     Stage the data the tables read: mnist, pacs, camvid archives besides cifar10.
set -uo pipefail
case ${PRESET:-} in
  unet) EXCLUSIVE=ldm_throughput SHARED= BUDGET_ldm_throughput=${BUDGET_ldm_throughput:-420} ;;
  perf) EXCLUSIVE=perf SHARED= BUDGET_perf=${BUDGET_perf:-400} FAST_RUNS=${FAST_RUNS:-3}
        RESNET_VARIANTS=${RESNET_VARIANTS:-jaxcv,torch_eager,torch_compile,flax_plain,jaxcv_b1024,jaxcv_scan8}
        export FAST_RUNS RESNET_VARIANTS ;;
  sweep) EXCLUSIVE=ldm_sweep SHARED= BUDGET_ldm_sweep=${BUDGET_ldm_sweep:-440} ;;
  tables) EXCLUSIVE=${TABLES:-"ldm_scaling coin afd broad maco sbm erm_pp san cadet"} SHARED= ;;
  '') ;;
  *) echo "run_all: unknown PRESET=$PRESET (unet, perf, sweep, tables)" >&2; exit 2 ;;
esac
export OUT=${OUT:-runs/gpu}
mkdir -p "$OUT"
# Staged wheels, skipping any distribution the machine already has (its own copies stay in use).
wheels=()
for whl in .device/wheels/*.whl .device_extra/wheels/*.whl; do
  [ -f "$whl" ] || continue
  dist=$(basename "$whl" | cut -d- -f1)
  python3 -c "import importlib.metadata as m, sys; m.version(sys.argv[1])" "$dist" 2>/dev/null \
    || wheels+=("$whl")
done
if [ ${#wheels[@]} -gt 0 ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site \
    "${wheels[@]}" || echo "installing staged wheels failed" >&2
fi
export PYTHONPATH=/tmp/site:$PWD${PYTHONPATH:+:$PYTHONPATH}
[ -d .device/data ] && export JAXCV_DATA_DIR=$PWD/.device/data
export JAXCV_CACHE_DIR=${JAXCV_CACHE_DIR:-/tmp/jaxcv_cache} PYTHONUNBUFFERED=1
{
  date -u +%Y-%m-%dT%H:%MZ
  nvidia-smi -L 2>/dev/null
  python3 -c 'import jax, flax, optax; print("jax", jax.__version__, "flax", flax.__version__, "optax", optax.__version__, jax.devices())'
} 2>&1 | tee "$OUT/environment.txt"

# Timed benchmarks run alone, one after another; then the training experiments (whose numbers are
# accuracies and FIDs, not speeds) share the GPU concurrently, each with a slice of its memory.
EXCLUSIVE=${EXCLUSIVE-"timings"}
SHARED=${SHARED-"afd coin ldm_sweep"}
declare -A BUDGET=([timings]=${BUDGET_timings:-400} [perf]=${BUDGET_perf:-340}
                   [ldm_throughput]=${BUDGET_ldm_throughput:-90}
                   [afd_benchmark]=${BUDGET_afd_benchmark:-30} [afd]=${BUDGET_afd:-220}
                   [coin]=${BUDGET_coin:-220} [ldm_sweep]=${BUDGET_ldm_sweep:-200})
# Each part's own (inner) budget, a little under the hard cap run_all enforces.
export BUDGET_PERF_INNER=$(( BUDGET[perf] - 5 ))
export AFD_BUDGET_S=$(( BUDGET[afd] - 5 )) COIN_BUDGET=$(( BUDGET[coin] - 5 ))
export BUDGET_S=$(( BUDGET[ldm_sweep] - 20 ))  # ldm_sweep.sh caps itself at BUDGET_S + 15.
export BUDGET_ldm_throughput=${BUDGET[ldm_throughput]}

run_part() {  # name: runs scripts/gpu/<name>.sh (or that paper's table) under its cap, logging
  local part=$1 start cap=${BUDGET[$1]:-${BUDGET_TABLE:-180}}  # to $OUT/<name>.log
  local cmd=("scripts/gpu/$part.sh")
  [ -f "${cmd[0]}" ] || cmd=(scripts/gpu/table.sh "$part" "$cap")
  start=$(date +%s)
  echo "=== $part start (cap $cap s) $(date -u +%H:%M:%S)"
  timeout --signal=TERM --kill-after=5 "$cap" bash "${cmd[@]}" > "$OUT/$part.log" 2>&1
  echo "=== $part rc=$? wall=$(( $(date +%s) - start )) s"
}

for part in $EXCLUSIVE; do
  run_part "$part"
  tail -n 12 "$OUT/$part.log"
done
pids=()
for part in $SHARED; do
  XLA_PYTHON_CLIENT_MEM_FRACTION=0.28 TABLE_RUNS=/tmp/jaxcv_tables_$part run_part "$part" &
  pids+=($!)
done
[ ${#pids[@]} -gt 0 ] && wait "${pids[@]}"
for part in $SHARED; do
  echo "--- $part"; tail -n 15 "$OUT/$part.log"
done
# One archive of everything: the device tool returns only a few files per call.
tar czf /tmp/run_all.tgz -C "$(dirname "$OUT")" "$(basename "$OUT")" && mv /tmp/run_all.tgz "$OUT/"
echo "run_all: done $(date -u +%H:%M:%S); archive $OUT/run_all.tgz"
