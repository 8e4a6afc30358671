#!/usr/bin/env bash
# The LDM-scaling miniature, gpu preset (configs/ldm_scaling/table.py), within BUDGET_S seconds.
exec bash scripts/gpu/table.sh ldm_scaling "${BUDGET_S:-440}"
