#!/usr/bin/env bash
# Thin wrapper: see ser/ivector/cli.py (python -m ser.ivector.cli extract_ivectors_online --help).
# Kaldi counterpart: egs/wsj/s5/steps/online/nnet2/extract_ivectors_online.sh
[ -f ./path.sh ] && . ./path.sh
exec python3 -m ser.ivector.cli extract_ivectors_online "$@"
