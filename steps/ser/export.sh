#!/usr/bin/env bash
# Usage: steps/ser/export.sh [opts] <model> <mfcc-config> <extractor-dir> <export-dir>
#   e.g. steps/ser/export.sh --system-dir exp/ser/tdnn_l12_uttivec --corpus IEMOCAP \
#          exp/ser/tdnn_l12_uttivec/all/final.pt conf/mfcc_hires.conf exp/nnet3/extractor exp/ser/tdnn_l12_uttivec/export
# A trained emotion network with everything inference needs (MFCC options, i-vector extractor + PCA, labels,
# provenance in model.json) in one directory; classify with ser-infer --model <export-dir>.
# Options: --system --system-dir --corpus --set --protocol --description --ivector-period.  See ser/bin/export_ser_model.py.
. "$(dirname "$0")/../../path.sh"
exec python -m ser.bin.export_ser_model "$@"
