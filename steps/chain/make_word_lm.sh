#!/usr/bin/env bash
# Usage: steps/chain/make_word_lm.sh [--order N] [--min-counts "c2 c3 ..."] <text> <lang-dir> <out.arpa[.gz]>
# Word n-gram LM of the ASR training transcripts in ARPA format (interpolated Kneser-Ney; Kaldi's
# local/ted_train_lm.sh trains a pruned 4-gram with pocolm).  See ser/bin/make_word_lm.py.
. "$(dirname "$0")/../../path.sh"
exec python -m ser.bin.make_word_lm "$@"
