#!/usr/bin/env bash
# Usage: steps/ser/train.sh [opts] <fold-dir> <ivector-dir> <pretrained-model> <dir>
#   e.g. steps/ser/train.sh --layer tdnnf12 --primary-lr-factor 0.25 data/iemocap_4cls_exc/folds/session/Ses05 \
#          exp/nnet3/ivectors_iemocap_all exp/chain/tdnn/final.pt exp/ser/tdnn_l12/Ses05
# One fold of a grafted emotion network: trains on <fold-dir>/train, selects the epoch on <fold-dir>/valid,
# writes <dir>/{final.pt,valid.json,training_curve.png}; resumes from <dir>/checkpoint.pt.  <ivector-dir> none: MFCC
# only, the pretrained body's i-vector input removed (tdnn_l12_noivec).
# Options: --labels --layer --hidden-dim --primary-lr-factor --from-scratch --num-epochs --patience
# --initial-lrate --final-lrate --chunk-width --minibatch-size --eval-chunk-width --seed
# --cache-frozen-body --checkpoint-interval --device --num-threads (--help for all).  See ser/bin/train_ser.py.
# DDP (utils/torchrun.sh), as steps/train_chain.sh: NPROC=2 steps/ser/train.sh ...  runs 2 ranks on this
# machine (torchrun); in a Slurm job of T tasks, srun steps/ser/train.sh ... one torchrun agent per task.
. "$(dirname "$0")/../../path.sh"
exec torchrun.sh python -m ser.bin.train_ser "$@"
