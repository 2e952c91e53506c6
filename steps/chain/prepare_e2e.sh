#!/usr/bin/env bash
# Usage: steps/chain/prepare_e2e.sh [--type biphone|mono] [--tie true|false] [--num-extra-lm-states 2000]
#          [--frame-subsampling-factor 3] ... <train-data-dir> <lang-dir> <out-dir>
#   e.g. steps/chain/prepare_e2e.sh --type biphone data/tedlium_train_sp data/lang_chain exp/chain/e2e_graphs
# Phone LM, den graph (den.pt, den.fst.txt) and numerator graphs (num.pt; --num-graphs false: none, the egs jobs
# of steps/chain/get_egs.sh --lang compile them).  See ser/bin/prepare_e2e.py.
. "$(dirname "$0")/../../path.sh"
exec python -m ser.bin.prepare_e2e "$@"
