#!/usr/bin/env bash
# Usage: local/ivector_eer.sh [--lda-data <data>] (--extractor-dir <dir> <data-dir>... | --data <data> <ivector-dir>...)
# Speaker-verification EER of utterance i-vectors (a check of stage 4).  See ser/bin/compute_ivector_eer.py.
. "$(dirname "$0")/../path.sh"
exec python -m ser.bin.compute_ivector_eer "$@"
