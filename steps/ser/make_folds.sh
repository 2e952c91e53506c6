#!/usr/bin/env bash
# Usage: steps/ser/make_folds.sh [--protocol session|speaker] [--num-valid-speakers 1] [--seed 0] <data-dir>
# Cross-validation folds as Kaldi data dirs: <data-dir>/folds/<protocol>/<fold>/{train,valid,test}.
# See ser/bin/make_ser_folds.py and ser/emotion/folds.py.
. "$(dirname "$0")/../../path.sh"
exec python -m ser.bin.make_ser_folds "$@"
