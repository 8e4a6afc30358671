#!/usr/bin/env bash
# One paper's table on the GPU: the `gpu` preset of configs/<paper>/table.py through the table
# driver, starting no row that would overrun the budget; results (no checkpoints) in $OUT/<paper>.
#   bash scripts/gpu/table.sh coin 220          # paper, budget in seconds
#   SMOKE=1 bash scripts/gpu/table.sh afd 900   # the runlocal preset, on any machine
# TABLE_ARG adds options to the preset (e.g. TABLE_ARG=seeds=2); rows run in /tmp/jaxcv_tables.
exec "${PYTHON:-python3}" -m jaxcv.sweep --table "configs/$1/table.py:$([ "${SMOKE:-0}" = 1 ] && echo runlocal || echo gpu)${TABLE_ARG:+,$TABLE_ARG}" --workdir "${TABLE_RUNS:-/tmp/jaxcv_tables}/$1" --deadline "$(( ${2:-600} - 15 ))" --export "${OUT:-runs/gpu}/$1"
