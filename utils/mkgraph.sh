#!/usr/bin/env bash
# Usage: utils/mkgraph.sh <lang-dir> <chain-dir> <arpa> <graph-dir>
# HCLG of the chain model (Kaldi's utils/mkgraph.sh --self-loop-scale 1.0) -> <graph-dir>/HCLG.fst,
# words.txt.  See ser/bin/mkgraph.py and ser/chain/mkgraph.py.
. "$(dirname "$0")/../path.sh"
exec python -m ser.bin.mkgraph "$@"
