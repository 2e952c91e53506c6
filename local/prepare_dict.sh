#!/usr/bin/env bash
# Usage: local/prepare_dict.sh [--text <text> ...] [--no-cmudict] <TEDLIUM.152k.dic> <dict-dir>
# egs/tedlium/s5_r2/local/prepare_dict.sh (+ CMUdict for other words).  See ser/bin/prepare_dict.py.
. "$(dirname "$0")/../path.sh"
exec python -m ser.bin.prepare_dict "$@"
