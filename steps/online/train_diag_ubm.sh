#!/usr/bin/env bash
# Usage: steps/online/train_diag_ubm.sh [opts] <data> <num-gauss> <pca-dir> <ubm-dir>
# Kaldi counterpart: egs/wsj/s5/steps/online/nnet2/train_diag_ubm.sh.  See ser/bin/train_diag_ubm.py (--help for the options).
. "$(dirname "$0")/../../path.sh"
exec python -m ser.bin.train_diag_ubm "$@"
