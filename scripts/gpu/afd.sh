#!/usr/bin/env bash
# AFD's table, gpu preset (configs/afd/table.py), within $AFD_BUDGET_S seconds.
exec bash scripts/gpu/table.sh afd "${AFD_BUDGET_S:-220}"
