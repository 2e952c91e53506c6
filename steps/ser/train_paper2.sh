#!/usr/bin/env bash
# Usage: steps/ser/train_paper2.sh --system <ds_dense|ds_lstm|ds_dense_dense|ds_dense_lstm|rf|majority> [opts] \
#          <feats-dir> <folds-dir> <system-dir>
# One of paper 2's systems trained and tested on every fold (exp/ser/<system>/<fold>/{utt2post,utt2pred});
# see ser/bin/train_paper2.py and ser/emotion/{ds_heads,baselines,paper2}.py.
. "$(dirname "$0")/../../path.sh"
exec python -m ser.bin.train_paper2 "$@"
