#!/usr/bin/env bash
# Usage: steps/online/train_diag_ubm.sh [opts] <data> <num-gauss> <pca-dir> <ubm-dir>
# Kaldi counterpart: egs/wsj/s5/steps/online/nnet2/train_diag_ubm.sh.  See ser/bin/train_diag_ubm.py (--help for the options).
# Jobs as Kaldi's: --cmd "<job runner>" --nj N --num-threads T: the init job (log/init.log, N x T threads) and N
# accumulation jobs per pass over <data>/splitN (log/acc.<pass>.<job>.log); this process sums and updates.
# Without --cmd the jobs run in this process.
. "$(dirname "$0")/../../path.sh"
exec python -m ser.bin.train_diag_ubm "$@"
