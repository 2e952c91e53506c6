#!/usr/bin/env bash
# Usage: steps/ser/decode.sh [--chunk-width 300] [--device auto] [--num-threads 1] <test-dir> <ivector-dir> <dir>
# Decodes <test-dir> with <dir>/final.pt: writes <dir>/{utt2post,utt2pred,test.json}
# (utterance = argmax of the summed frame softmaxes); <ivector-dir> none for a network trained without i-vectors.
# See ser/bin/decode_ser.py.
. "$(dirname "$0")/../../path.sh"
exec python -m ser.bin.decode_ser "$@"
