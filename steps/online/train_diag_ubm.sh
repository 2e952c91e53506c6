#!/usr/bin/env bash
# Thin wrapper: see ser/ivector/cli.py (python -m ser.ivector.cli train_diag_ubm --help).
# Kaldi counterpart: egs/wsj/s5/steps/online/nnet2/train_diag_ubm.sh
[ -f ./path.sh ] && . ./path.sh
exec python3 -m ser.ivector.cli train_diag_ubm "$@"
