#!/usr/bin/env bash
# Usage: steps/ser/score.sh [--protocol P] [--set S] <data-dir-with-utt2emo> <system-dir>
#   e.g. steps/ser/score.sh --protocol session data/iemocap_4cls_exc exp/ser/tdnn_l12
# Validates the system's labels.txt and <fold>/{utt2pred,utt2post}, writes results.json, results.md and
# confusion.png into <system-dir>, and regenerates exp/results.md.  See ser/bin/score_ser.py, ser/eval/.
. "$(dirname "$0")/../../path.sh"
exec python -m ser.bin.score_ser "$@"
