#!/usr/bin/env bash
# Usage: steps/ser/make_final_fold.sh [--num-valid-speakers 1] [--seed 0] <data-dir>
# Training data of the exported model: every session, whole validation speakers held out:
# <data-dir>/folds/final/all/{train,valid}.  See ser/bin/make_ser_final_fold.py.
. "$(dirname "$0")/../../path.sh"
exec python -m ser.bin.make_ser_final_fold "$@"
