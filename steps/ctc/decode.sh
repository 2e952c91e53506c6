#!/usr/bin/env bash
# Usage: steps/ctc/decode.sh [--device auto] <model.pt> <data> <decode-dir>
# Greedy CTC decoding; writes <decode-dir>/{hyp.txt,ref.txt,cer.txt,wer.txt,all_blank.txt,results.txt}
# (character and word error rates, and those of an all-blank output).  See ser/bin/decode_ctc.py.
. "$(dirname "$0")/../../path.sh"
exec python -m ser.bin.decode_ctc "$@"
