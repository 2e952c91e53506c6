#!/usr/bin/env bash
# Usage: steps/ctc/train.sh [opts] <train-data> <exp-dir>
#   e.g. steps/ctc/train.sh --net mini --epochs 8 data/tedlium_train_mfcc26 exp/ctc/ds_mini
# CTC training of the DeepSpeech-style model (DeepSpeech v0.9's train.py: Adam 1e-3, mean per-utterance
# CTC loss); see ser/bin/train_ctc.py and ser/train/ctc_trainer.py.  Options: --net mini|paper --epochs
# --learning-rate --max-frames --num-valid-utts --valid-interval --dropout-rate --srand --device --resume
# (--help for all).  Writes <exp-dir>/{final.pt,checkpoint.pt,log/train.log,report/training_curve.png}.
. "$(dirname "$0")/../../path.sh"
exec python -m ser.bin.train_ctc "$@"
