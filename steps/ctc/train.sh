#!/usr/bin/env bash
# Usage: steps/ctc/train.sh [opts] <train-data> <exp-dir>
#   e.g. steps/ctc/train.sh --net mini --epochs 8 data/tedlium_train_mfcc26 exp/ctc/ds_mini
# CTC training of the DeepSpeech-style model (DeepSpeech v0.9's train.py: Adam 1e-3, mean per-utterance
# CTC loss); see ser/bin/train_ctc.py and ser/train/ctc_trainer.py.  Options: --net mini|paper --epochs
# --learning-rate --max-frames --num-valid-utts --valid-interval --dropout-rate --srand --device --resume
# --checkpoint-interval (--help for all).  Writes <exp-dir>/{final.pt,checkpoint.pt,log/train.log,
# report/training_curve.png}.
# DDP (utils/torchrun.sh), as steps/train_chain.sh: NPROC=2 steps/ctc/train.sh ...  runs 2 ranks on this
# machine (torchrun); in a Slurm job of T tasks, srun steps/ctc/train.sh ... one torchrun agent per task.
. "$(dirname "$0")/../../path.sh"
exec torchrun.sh python -m ser.bin.train_ctc "$@"
