#!/usr/bin/env bash
# Usage: steps/ser/make_speaker_folds.sh [--protocol speaker|session] [--seed 0] <data-dir>
# Folds as Kaldi data dirs: <data-dir>/folds/<protocol>/<fold>/{train,valid,test}.
# TODO(interfaces): stand-in for stage 7's steps/ser/make_folds.sh; see ser/bin/make_speaker_folds.py.
. "$(dirname "$0")/../../path.sh"
exec python -m ser.bin.make_speaker_folds "$@"
