#!/usr/bin/env bash
# Usage: local/prepare_tedlium.sh [--seconds-per-spk-max 180] <TEDLIUM_release2 | TEDLIUM_release-3> <data-root>
# egs/tedlium/s5_r2/local/prepare_data.sh: data/tedlium_{train,dev,test}.  See ser/bin/prepare_tedlium.py.
. "$(dirname "$0")/../path.sh"
exec python -m ser.bin.prepare_tedlium "$@"
