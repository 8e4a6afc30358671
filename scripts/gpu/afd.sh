#!/usr/bin/env bash
# AFD on one GPU within a hard wall budget (default 128 s, AFD_BUDGET_S), including compilation
# and CIFAR-10 decoding:
#   1. natural pre-training, CIFAR-10 ResNet-18, 6 epochs (batch 512, bf16, one-cycle lr 0.4)
#   2. vAFT, 1 epoch of PGD-10 fine-tuning from it (batch 512, lr 0.1 = 0.025 x 512/128, EMA)
#   3. AFD, same protocol (alpha 0.05, beta 0.25, gamma 25, 'clean' update rule), one seed;
#      both evaluate every half epoch: clean, PGD-20 (step 0.003 and 2/255) and the feature gap
#   4. the PGD-10 training throughput benchmark, jaxcv vs PyTorch eager / torch.compile
#   5. APGD-CE + APGD-T (50 steps, 3 targets) on 1,000 test images of the AFD and vAFT models
#   6. the table (Clean / PGD / AA-proxy / Avg) and the feature-gap plot
# Stages run in this priority order, each under `timeout` and only while budget is left; a stage
# that fails or times out is reported and the script goes on. Everything lands in $OUT/afd/.
# At 128 s the APGD evaluations (5) are the first to be skipped; AFD_BUDGET_S=220 runs them all.
#   bash scripts/gpu/afd.sh                          # on the GPU machine, from the repo root
#   SMOKE=1 OUT=/tmp/out_afd bash scripts/gpu/afd.sh # the same pipeline, tiny, on a CPU
set -uo pipefail
OUT=${OUT:-runs/gpu}
DIR="$OUT/afd"
RUNS=${AFD_RUNS:-/tmp/afd_runs}
PY=${PYTHON:-python3}
SMOKE=${SMOKE:-0}
mkdir -p "$DIR" "$RUNS"
export PYTHONUNBUFFERED=1
# The vAFT and AFD evaluations compile the same programs: the second reuses the first's.
export JAX_COMPILATION_CACHE_DIR=${JAX_COMPILATION_CACHE_DIR:-/tmp/jaxcv_afd_compile_cache}
START=$(date +%s)
SLOW=${AFD_SLOW:-1}  # Stage caps x SLOW (run_all.sh: 2, the GPU is shared then).
if [ "$SMOKE" != 0 ]; then
  SLOW=30
  BUDGET=${AFD_BUDGET_S:-6000}
  COMMON="runlocal,dataset=cifar10_sample,model=small_cnn,eval_examples=64"
  NATURAL="$COMMON"; FINETUNE="$COMMON,batch=32"; EVAL="runlocal,dataset=cifar10_sample,model=small_cnn,examples=64,apgd_steps=5,targets=2,batch=32"
  rm -rf "$RUNS"; mkdir -p "$RUNS"
else
  BUDGET=${AFD_BUDGET_S:-128}
  NATURAL="epochs=6,eval_examples=1000"
  FINETUNE="epochs=1,batch=512,evals_per_epoch=2,eval_examples=1000"
  EVAL="examples=1000,apgd_steps=50,targets=3"
fi
SCHEDULE="natural: $NATURAL | vAFT/AFD: $FINETUNE | evaluation: $EVAL | budget ${BUDGET}s"
echo "AFD GPU run; schedule: $SCHEDULE" | tee "$DIR/schedule.txt"
FLAGS=(--config.progress_bar=false)

left() { echo $(( BUDGET - ($(date +%s) - START) )); }

# stage NAME MAX_SECONDS MIN_SECONDS command...: runs under min(MAX, budget left), skipped when
# less than MIN is left.
stage() {
  local name=$1 max=$2 min=$3; shift 3
  local remaining; remaining=$(left)
  if (( remaining < min )); then
    echo "[$name] skipped: ${remaining}s of budget left (needs ${min}s)" | tee -a "$DIR/stages.txt"
    return 1
  fi
  max=$(( max * SLOW ))  # CPU smoke runs get proportionally longer limits.
  local limit=$(( max < remaining ? max : remaining ))
  local t0; t0=$(date +%s)
  echo "[$name] start (limit ${limit}s, $(( $(date +%s) - START ))s elapsed)"
  timeout --signal=INT --kill-after=5 "$limit" "$@" > "$DIR/$name.log" 2>&1
  local rc=$?
  echo "[$name] rc=$rc in $(( $(date +%s) - t0 ))s" | tee -a "$DIR/stages.txt"
  grep -v '^\s*$' "$DIR/$name.log" | tail -n 12
  return $rc
}

# collect NAME: copies a run's summary, metrics and curves next to the logs.
collect() {
  for f in summary.json metrics.jsonl metrics.png config.json; do
    [ -f "$RUNS/$1/$f" ] && cp "$RUNS/$1/$f" "$DIR/${1}_$f"
  done
  return 0
}

nvidia-smi -L 2>/dev/null
$PY -c 'import jax, flax; print("jax", jax.__version__, "flax", flax.__version__, jax.devices())'

MAIN=($PY -m jaxcv.main "${FLAGS[@]}")
stage natural 42 20 "${MAIN[@]}" --config "configs/afd/natural.py:$NATURAL" --workdir "$RUNS/natural"
collect natural
stage vaft 30 15 "${MAIN[@]}" --config "configs/afd/vaft.py:$FINETUNE,init=$RUNS/natural" \
  --workdir "$RUNS/vaft"
collect vaft
stage afd 34 15 "${MAIN[@]}" --config "configs/afd/afd.py:$FINETUNE,init=$RUNS/natural" \
  --workdir "$RUNS/afd"
collect afd
# run_all.sh times the benchmark alone (scripts/gpu/afd_benchmark.sh) and sets AFD_SKIP_BENCHMARK.
if [ "${AFD_SKIP_BENCHMARK:-0}" = 0 ]; then
  stage benchmark 22 12 env BENCH_OUT="$DIR" $PY -m benchmarks.pgd_training
fi
for model in afd vaft; do
  stage "eval_$model" 20 8 "${MAIN[@]}" --config "configs/afd/evaluate.py:$EVAL,init=$RUNS/$model" \
    --workdir "$RUNS/eval_$model"
  collect "eval_$model"
done
# The table is cheap and reads whatever exists: it gets a few seconds past the budget if needed.
timeout 20 $PY scripts/afd_table.py --dir "$DIR" --schedule "$SCHEDULE" 2>&1 | tee "$DIR/table.log"
echo "total: $(( $(date +%s) - START ))s wall (budget ${BUDGET}s); outputs in $DIR"
