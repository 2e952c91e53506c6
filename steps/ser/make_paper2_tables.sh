#!/usr/bin/env bash
# Usage: steps/ser/make_paper2_tables.sh <set-data-dir> [<exp-dir>]
# Paper 2's Table 1 (class counts), Table 2 (accuracy, UA / WA / F1) and Fig. 3 (ds_dense_lstm against
# segment length) into <exp-dir>/ser/paper2_*; see ser/bin/make_paper2_tables.py.
. "$(dirname "$0")/../../path.sh"
exec python -m ser.bin.make_paper2_tables "$@"
