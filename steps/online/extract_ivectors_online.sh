#!/usr/bin/env bash
# Usage: steps/online/extract_ivectors_online.sh [opts] <data> <extractor-dir> <ivector-dir>
# Kaldi counterpart: egs/wsj/s5/steps/online/nnet2/extract_ivectors_online.sh.  See ser/bin/extract_ivectors_online.py (--help for the options).
. "$(dirname "$0")/../../path.sh"
exec python -m ser.bin.extract_ivectors_online "$@"
