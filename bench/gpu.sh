#!/usr/bin/env bash
# Every GPU figure of the README's benchmark table, in one run on a machine with CUDA:
#   bench/gpu.sh [log]        (default exp/bench/gpu.log; the GPU's name is its first line)
# First the CPU-equals-GPU tests (tests/test_cuda.py, tests/test_mfcc.py and test_tdnnf.py's CUDA tests),
# then each benchmark at the paper's sizes with --device cuda; each prints its reference measured in the
# same run (the CPU, kaldi-native-fbank, the naive LF-MMI, the network alone).  A failing step is logged
# with its exit status and the next one runs.
set -u
cd "$(dirname "$0")/.."
log=${1:-exp/bench/gpu.log}
mkdir -p "$(dirname "$log")"
py=$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )
step() { echo "### $*" | tee -a "$log"; "$@" 2>&1 | tee -a "$log"; echo "### exit ${PIPESTATUS[0]}" | tee -a "$log"; }

: > "$log"
step nvidia-smi -L
step $py -m pytest -q -rs tests/test_cuda.py tests/test_mfcc.py tests/test_tdnnf.py -k cuda
step $py bench/mfcc.py --device cuda --repeats 3
step $py bench/lfmmi.py --device cuda --repeats 3                  # 20k-state TED-LIUM-size graph
step $py bench/ivector.py --device cuda --seconds 3600 --repeats 3
step $py bench/chain_train.py --device cuda                        # tdnn_1g, 64 x 150, bf16 network, fp32 LF-MMI
step $py bench/chain_train.py --device cuda --bf16 0
step $py bench/ctc_train.py --net paper --device cuda --utts 32 --frames 400
step $py bench/ser_train.py --device cuda
step $py bench/infer.py --device cuda --seconds 60 600 --repeats 1
