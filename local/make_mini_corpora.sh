#!/usr/bin/env bash
# Usage: local/make_mini_corpora.sh --out <dir> [--seed 0] [--tedlium-train-minutes 60] [--iemocap-turns 1000]
# Stage 0: the embedded TED-LIUM r2 and IEMOCAP corpora, synthesised with espeak-ng.  See ser/bin/make_mini_corpora.py.
. "$(dirname "$0")/../path.sh"
exec python -m ser.bin.make_mini_corpora "$@"
