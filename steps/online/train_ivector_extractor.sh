#!/usr/bin/env bash
# Usage: steps/online/train_ivector_extractor.sh [opts] <data> <ubm-dir> <extractor-dir>
# Kaldi counterpart: egs/wsj/s5/steps/online/nnet2/train_ivector_extractor.sh.  See ser/bin/train_ivector_extractor.py (--help for the options).
# Jobs as Kaldi's: --cmd "<job runner>" --nj N --num-threads T: N statistics jobs over <data>/splitN
# (log/stats.<job>.log) and N accumulation jobs per iteration (log/acc.<iter>.<job>.log); this process sums
# and updates.  Without --cmd the jobs run in this process.
. "$(dirname "$0")/../../path.sh"
exec python -m ser.bin.train_ivector_extractor "$@"
