#!/usr/bin/env bash
# Usage: steps/chain/decode_per.sh [--online-ivector-dir D] [--train-text T] [--device auto] \
#          <model.pt> <data> <chain-dir> <lang> <decode-dir>
# Best path through the denominator graph (acwt 1.0) -> phones; writes <decode-dir>/per.txt and the
# no-acoustics baselines per_lm_only.txt / per_most_frequent.txt.  See ser/bin/decode_per.py.
. "$(dirname "$0")/../../path.sh"
exec python -m ser.bin.decode_per "$@"
