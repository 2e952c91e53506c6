#!/usr/bin/env bash
# Usage: steps/prepare_lang_chain.sh [--sil-prob 0.5] <dict-dir> <oov-word> <lang-dir>
#   e.g. steps/prepare_lang_chain.sh data/local/dict "<unk>" data/lang_chain
# utils/prepare_lang.sh (position-independent phones) + steps/nnet3/chain/gen_topo.py.  See ser/bin/prepare_lang_chain.py.
. "$(dirname "$0")/../path.sh"
exec python -m ser.bin.prepare_lang_chain "$@"
