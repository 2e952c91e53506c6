#!/usr/bin/env bash
# Usage: steps/ser/score_xcorpus.sh --train-corpus A --test-corpus B <export-dir> <infer-dir> <data-dir> <system-dir>
#   e.g. steps/ser/score_xcorpus.sh --train-corpus IEMOCAP_full_release --test-corpus IEMOCAP_B \
#          exp/ser/tdnn_l12_uttivec/export exp/ser/tdnn_l12_uttivec_xcorpus/IEMOCAP_B/infer \
#          data/xcorpus/iemocap_4cls_exc exp/ser/tdnn_l12_uttivec_xcorpus
# Cross-corpus test: ser-infer's utt2emo/utt2post of an exported model on another corpus become a one-fold
# system (fold B), scored as steps/ser/score.sh does; regenerates exp/results.md.  See ser/bin/score_xcorpus.py.
. "$(dirname "$0")/../../path.sh"
exec python -m ser.bin.score_xcorpus "$@"
