#!/usr/bin/env bash
# Thin wrapper: see ser/ivector/cli.py (python -m ser.ivector.cli train_ivector_extractor --help).
# Kaldi counterpart: egs/wsj/s5/steps/online/nnet2/train_ivector_extractor.sh
[ -f ./path.sh ] && . ./path.sh
exec python3 -m ser.ivector.cli train_ivector_extractor "$@"
