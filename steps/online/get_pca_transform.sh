#!/usr/bin/env bash
# Usage: steps/online/get_pca_transform.sh [opts] <data> <pca-dir>
# Kaldi counterpart: egs/wsj/s5/steps/online/nnet2/get_pca_transform.sh.  See ser/bin/get_pca_transform.py (--help for the options).
. "$(dirname "$0")/../../path.sh"
exec python -m ser.bin.get_pca_transform "$@"
