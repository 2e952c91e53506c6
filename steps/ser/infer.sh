#!/usr/bin/env bash
# Usage: steps/ser/infer.sh --model <export-dir> [opts] <input> [<input> ...]   (the same program as ser-infer)
#   e.g. steps/ser/infer.sh --model exp/ser/tdnn_l12_uttivec/export --timeline out/ my_recording.mp3
# Emotion of audio files / directories / data dirs / wav.scp; tsv, jsonl or Kaldi utt2emo + utt2post output;
# --timeline DIR writes a PNG and a CSV of sliding-window posteriors per recording.  See ser/bin/ser_infer.py.
. "$(dirname "$0")/../../path.sh"
exec python -m ser.bin.ser_infer "$@"
