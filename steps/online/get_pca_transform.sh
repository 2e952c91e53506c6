#!/usr/bin/env bash
# Thin wrapper: see ser/ivector/cli.py (python -m ser.ivector.cli get_pca_transform --help).
# Kaldi counterpart: egs/wsj/s5/steps/online/nnet2/get_pca_transform.sh
[ -f ./path.sh ] && . ./path.sh
exec python3 -m ser.ivector.cli get_pca_transform "$@"
