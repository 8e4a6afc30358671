#!/usr/bin/env bash
# COIN's table, gpu preset (configs/coin/table.py), within $COIN_BUDGET seconds.
exec bash scripts/gpu/table.sh coin "${COIN_BUDGET:-220}"
