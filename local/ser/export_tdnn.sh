#!/usr/bin/env bash
# Stage 7, last step (issue 14): train <system> once more on every session and export it.
#
#   local/ser/export_tdnn.sh [--config conf/mini.yaml] <system> <ivector-dir> [train_ser options]
#
# Called at the end of local/ser/run_tdnn.sh with the system's i-vector dir and the training options its
# folds were trained with (train_common + system_opts there):
#   local/ser/export_tdnn.sh --config "$config" tdnn_l12_uttivec "$(system_ivectors tdnn_l12_uttivec)" \
#     "${train_common[@]}" $(system_opts tdnn_l12_uttivec)
# Steps: data/<set>/folds/final/all/{train,valid} (steps/ser/make_final_fold.sh: every session, whole
# validation speakers held out, drawn as for the folds); steps/ser/train.sh into exp/ser/<system>/final
# (epoch selected on the validation speakers; no test data: the system's figures are its cross-validated
# ones); steps/ser/export.sh into exp/ser/<system>/export (model.pt, labels.txt, mfcc.conf,
# ivector_extractor/, model.json with the cross-validated results of exp/ser/<system>/results.json).
# Classify recordings with: ser-infer --model exp/ser/<system>/export <files>.
# Resumable: training and export are each redone only when their stamps (ser.io.stamp) record other
# commands or inputs; an unfinished training resumes from its checkpoint.
set -euo pipefail
config=conf/mini.yaml
cd "$(dirname "$0")/../.."
. utils/recipe_config.sh
if [ $# -lt 2 ]; then
  echo "usage: $0 [--config conf/X.yaml] <system> <ivector-dir> [train_ser options]" >&2
  exit 1
fi
sys=$1; iv=$2; shift 2

data=$data_dir/$ser_set
extractor=$exp_dir/nnet3/extractor
d=$exp_dir/ser/$sys/final
out=$exp_dir/ser/$sys/export
mkdir -p $d/log
$train_cmd $d/log/make_final_fold.log steps/ser/make_final_fold.sh \
  --num-valid-speakers "$ser_num_valid_speakers" --seed "$ser_seed" $data
# each step is redone unless its stamp (ser.io.stamp) records the same command and inputs
stamp=(python -m ser.bin.stamp)
step=(steps/ser/train.sh "$@" $data/folds/final/all $iv $ser_model $d)
"${stamp[@]}" run $d/.stamp --opt "step=${step[*]}" $ser_model $data/folds/final/all/train/utt2spk \
  $data/folds/final/all/valid/utt2spk $data/utt2emo $iv/.stamp --stale $d/options.json -- $cuda_cmd $(job_opts ser_train) $d/log/train.log "${step[@]}"
corpus="IEMOCAP"
[ "$corpora_synthesize" = true ] && corpus="IEMOCAP layout, embedded synthetic corpus (stage 0)"
step=(steps/ser/export.sh --system $sys --system-dir $exp_dir/ser/$sys --corpus "$corpus"
      --set "$ser_set" --protocol "$ser_protocol" $d/final.pt "$features_mfcc_config" $extractor $out)
"${stamp[@]}" run $out/.stamp --opt "step=${step[*]}" $d/.stamp $exp_dir/ser/$sys/results.json "$features_mfcc_config" \
  $extractor/.stamp -- $train_cmd $d/log/export.log "${step[@]}"
echo "$out: exported (ser-infer --model $out <recordings>)"
