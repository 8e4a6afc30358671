#!/usr/bin/env bash
# LDM-scaling miniature (docs/ldm_scaling.md): a CIFAR-10 class-conditional width sweep of the
# 32x32 small_unet family, then the sampling sweep (best proxy FID/KID over guidance per
# (model, sampler, steps) against sampling cost) and FID against training compute.
#
# Budget: BUDGET_S seconds of wall time on one GPU including compilation (default 75; the whole
# script is capped at BUDGET_S + 15). Phases, all in one Python process (one jax start-up, one
# data load per phase from the decode cache):
#   1. a small CIFAR-10 classifier (small_cnn, ~2 epochs) whose pooled features define the proxy
#      FID/KID space (no Inception weights on the machine);
#   2. the width sweep: widths $WIDTHS, 1 res block per level, $STEPS steps at batch $BATCH, bf16,
#      EMA, 2 checkpoints each (jaxcv.diffusion.sweep); no width starts after 55% of the budget;
#   3. the sampling sweep (jaxcv.diffusion.sampling_sweep) with a deadline at the budget's end:
#      DDIM and DPM-Solver++ at a few step counts x guidance {1, 2, 3} on $SAMPLES samples per
#      point, one compiled sampler per model; then the training-compute curve (DDIM 8, w=2).
# Quality at this budget is poor: only orderings (which width wins at which sampling cost) mean
# anything, and FIDs are in a small classifier's feature space (proxies).
#
#   OUT=/tmp/out bash scripts/gpu/ldm_sweep.sh            # on the GPU machine, from the repo root
#   SMOKE=1 PYTHON=/tmp/venv/bin/python OUT=/tmp/out_ldm_sweep bash scripts/gpu/ldm_sweep.sh  # CPU
# Writes $OUT/ldm_sweep/: log.txt, classifier.json, sweep.json/.md, results.json/.md, *.png.
# Checkpoints go to $WORK (default: a temporary folder), not to $OUT.
#
# Compilation: every width compiles its parameter init, train step and samplers (XLA GPU
# compile time of a large graph; nothing in the UNet is unrolled or traced twice). Compiled
# executables go to a persistent cache, $JAX_CACHE_DIR (default runs/jax_cache, ignored by git),
# so a rerun on the same machine, or with that folder carried over, skips compilation. Every
# trace, lowering and XLA compile of a second or more is logged with its duration.
set -uo pipefail
NAME=ldm_sweep
OUT_DIR="${OUT:-runs/gpu}/$NAME"
mkdir -p "$OUT_DIR"
export OUT_DIR
export WORK="${WORK:-$(mktemp -d /tmp/ldm_sweep_work.XXXXXX)}"
export SMOKE="${SMOKE:-0}"
export BUDGET_S="${BUDGET_S:-75}"
if [ "$SMOKE" = "1" ]; then
  export WIDTHS="${WIDTHS:-16,32}" STEPS="${STEPS:-4}" BATCH="${BATCH:-32}" SAMPLES="${SAMPLES:-64}"
  export SAMPLERS="${SAMPLERS:-ddim(steps=(2,4)),dpm_solver_pp(steps=2)}" GUIDANCE="${GUIDANCE:-1,2}"
  export BUDGET_S=100000  # No time limit on a CPU smoke run.
  [ -z "${JAXCV_DATA_DIR:-}" ] && [ -d ../shared/data ] && export JAXCV_DATA_DIR=$PWD/../shared/data
else
  export WIDTHS="${WIDTHS:-32,64,96}" STEPS="${STEPS:-250}" BATCH="${BATCH:-256}"
  export SAMPLES="${SAMPLES:-1000}" SAMPLERS="${SAMPLERS:-ddim(steps=(4,8,16)),dpm_solver_pp(steps=(4,8))}"
  export GUIDANCE="${GUIDANCE:-1,2,3}"
  # Compilation dominates this budget: skip cuDNN autotuning (slightly slower kernels).
  export XLA_FLAGS="${XLA_FLAGS:-} --xla_gpu_autotune_level=0"
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
# jax reads its options from JAX_* variables: a persistent compilation cache for every compile
# that takes over a second (the UNets' init, train steps and samplers).
export JAX_COMPILATION_CACHE_DIR="${JAX_CACHE_DIR:-$PWD/runs/jax_cache}"
export JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="${JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS:-1}"
mkdir -p "$JAX_COMPILATION_CACHE_DIR"
echo "ldm_sweep: widths=$WIDTHS steps=$STEPS batch=$BATCH samples=$SAMPLES samplers=$SAMPLERS" \
     "guidance=$GUIDANCE budget=${BUDGET_S}s smoke=$SMOKE work=$WORK" \
     "compile cache=$JAX_COMPILATION_CACHE_DIR ($(ls "$JAX_COMPILATION_CACHE_DIR" | wc -l) entries)" \
     | tee "$OUT_DIR/log.txt"

PYTHON="${PYTHON:-python3}"
CAP=$(( BUDGET_S + 15 ))
timeout --signal=TERM --kill-after=5 "$CAP" "$PYTHON" - <<'PY' 2>&1 | tee -a "$OUT_DIR/log.txt"
import json, logging, os, shutil, time
T0 = time.perf_counter()
logging.basicConfig(level=logging.INFO, format='%(asctime)s %(message)s')
for noisy in ('absl', 'orbax', 'jax._src'):
  logging.getLogger(noisy).setLevel(logging.WARNING)
import jax
from jaxcv import config as config_lib, train
from jaxcv.diffusion import sampling_sweep, sweep

env = os.environ
smoke, budget, out, work = env['SMOKE'] == '1', float(env['BUDGET_S']), env['OUT_DIR'], env['WORK']
elapsed = lambda: time.perf_counter() - T0


def log_slow_compiles(event, duration, **kwargs):
  """Where the time goes: every trace / lowering / XLA compile of a second or more."""
  if duration >= 1.0 and event.startswith('/jax/core/compile/'):
    phase = event.rsplit('/', 1)[-1].replace('_duration', '')
    print(f'[{elapsed():.0f}s] {phase} {kwargs.get("fun_name", "?")}: {duration:.1f}s', flush=True)


jax.monitoring.register_event_duration_secs_listener(log_slow_compiles)
print(f'devices: {jax.devices()}', flush=True)

# 1. The classifier whose features define the proxy FID/KID space.
cls_arg = 'model=small_cnn,runlocal' if smoke else 'model=small_cnn,epochs=2,batch=512'
cls_config = config_lib.load(f'configs/cifar10/resnet18.py:{cls_arg}',
                             ['progress_bar=false', 'plot=false', 'evals.test.max_examples=2000'])
cls_dir = os.path.join(work, 'classifier')
cls_summary = train.run(cls_config, cls_dir)
print(f'[{elapsed():.0f}s] feature classifier: test accuracy {cls_summary["test/accuracy"]:.3f}',
      flush=True)
json.dump({**cls_summary, 'config': cls_arg}, open(os.path.join(out, 'classifier.json'), 'w'),
          indent=2)

# 2. The width sweep: one recipe, only the width changes.
lr, ema, warmup = ('1e-3', '0.9', '1') if smoke else ('5e-4', '0.99', '25')
spec = (f'configs/ldm_scaling/cifar10_unet.py:steps={env["STEPS"]},batch={env["BATCH"]},lr={lr},'
        f'ema={ema},warmup={warmup},blocks=1,checkpoints=2')
overrides = ['progress_bar=false', 'plot=false', f'log_every_steps={max(int(env["STEPS"]) // 5, 1)}']
if smoke:
  overrides += ['data.train_examples=512', 'dtype=float32']
widths = [int(w) for w in env['WIDTHS'].split(',')]
sweep_dir = os.path.join(work, 'sweep')
result = sweep.run_sweep(spec, widths, sweep_dir, overrides,
                         deadline_seconds=max(0.55 * budget - elapsed(), 0))
for name in ('sweep.json', 'sweep.md'):
  shutil.copy(os.path.join(sweep_dir, name), out)
print(f'[{elapsed():.0f}s] trained widths {[m["width"] for m in result["members"]]}', flush=True)

# 3. The sampling sweep and the training-compute curve, stopped by the deadline.
note = (f'{budget:.0f} s wall on {jax.devices()[0].device_kind} including compilation: widths '
        f'{env["WIDTHS"]} (1 res block per level), {env["STEPS"]} steps at batch {env["BATCH"]}, '
        f'{env["SAMPLES"]} samples per point, proxy FID in a small_cnn feature space '
        f'(test accuracy {cls_summary["test/accuracy"]:.2f}). Only orderings are meaningful.')
if smoke:
  note = ('SMOKE run on CPU (no time limit): tiny models and sample counts; the numbers are '
          'meaningless.')
res = sampling_sweep.run(
    sweep_dir, f'classifier:{cls_dir}', out, samplers=sampling_sweep.parse_samplers(env['SAMPLERS']),
    guidance=[float(g) for g in env['GUIDANCE'].split(',')], num_samples=int(env['SAMPLES']),
    batch_size=min(500, int(env['SAMPLES'])), reference_examples=500 if smoke else 10_000,
    curve_setting=('ddim', 8 if not smoke else 2, 2.0),
    deadline_seconds=max(budget - 6 - elapsed(), 0), budget_note=note)
print(f'[{elapsed():.0f}s] {len(res["points"])} sampling points, {len(res["training_curve"])} '
      f'curve points{" (incomplete: deadline)" if res["incomplete"] else ""}', flush=True)
PY
rc=${PIPESTATUS[0]}
if [ ! -f "$OUT_DIR/fid_vs_sampling_cost.png" ] && [ -f "$OUT_DIR/results.json" ]; then
  echo "redrawing plots from results.json" | tee -a "$OUT_DIR/log.txt"
  timeout 30 "$PYTHON" -m jaxcv.diffusion.sampling_sweep --sweep "$WORK/sweep" --feature_space none \
    --out "$OUT_DIR" --replot 2>&1 | tail -3
fi
[ -f "$OUT_DIR/results.md" ] && cat "$OUT_DIR/results.md"
echo "ldm_sweep: rc=$rc, outputs in $OUT_DIR"
exit $rc
