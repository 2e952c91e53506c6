#!/usr/bin/env bash
# Usage: steps/online/train_ivector_extractor.sh [opts] <data> <ubm-dir> <extractor-dir>
# Kaldi counterpart: egs/wsj/s5/steps/online/nnet2/train_ivector_extractor.sh.  See ser/bin/train_ivector_extractor.py (--help for the options).
. "$(dirname "$0")/../../path.sh"
exec python -m ser.bin.train_ivector_extractor "$@"
