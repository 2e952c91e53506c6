#!/usr/bin/env bash
# Usage: steps/train_chain.sh [opts] <train-data> <ivector-dir> <chain-dir> <exp-dir>
#   e.g. steps/train_chain.sh --net mini --num-epochs 1 data/tedlium_train_sp \
#          exp/nnet3/ivectors_tedlium_train_sp exp/chain exp/chain/tdnn
# LF-MMI training of the TDNN-F (Kaldi steps/nnet3/chain/train.py); see ser/bin/train_chain.py
# and ser/train/chain_trainer.py.  Options: --num-epochs --initial-effective-lrate
# --final-effective-lrate --num-jobs-initial --num-jobs-final --frames-per-iter
# --num-chunk-per-minibatch --chunk-width --egs-type e2e|chunk --xent-regularize
# --leaky-hmm-coefficient --dropout-schedule --max-param-change --net tiny|mini|tdnn_1g
# --device auto|cpu|cuda --bf16 true|false --resume true|false --srand N  (--help for all).
# DDP (utils/torchrun.sh): NPROC=4 steps/train_chain.sh ...  runs 4 ranks on this machine (torchrun);
# in a Slurm job, srun steps/train_chain.sh ... runs one torchrun agent per task (c10d rendezvous), e.g.
#   sbatch --nodes 2 --ntasks-per-node 1 --gres gpu:4 --wrap "NPROC=4 srun steps/train_chain.sh ..."
. "$(dirname "$0")/../path.sh"
exec torchrun.sh python -m ser.bin.train_chain "$@"
