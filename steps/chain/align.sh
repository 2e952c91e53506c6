#!/usr/bin/env bash
# Usage: steps/chain/align.sh [--online-ivector-dir D] [--device auto] <data> <chain-dir> <model.pt> <ali-dir>
# Viterbi alignment of each utterance's flat-start numerator graph with a chain model (Kaldi's
# steps/nnet3/align.sh for chain models); writes <ali-dir>/ali.pt.  See ser/bin/chain_align.py.
. "$(dirname "$0")/../../path.sh"
exec python -m ser.bin.chain_align "$@"
