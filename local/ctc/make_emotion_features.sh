#!/usr/bin/env bash
# First part of stage 9 of run.sh (local/ctc/run_paper2.sh): paper 2's features of the emotion sets (data/iemocap_all covers them).
#   local/ctc/make_emotion_features.sh [--config conf/mini.yaml]   (needs stages 1 and 8)
# Config: ctc.* (net, MFCC options, layer), paper2.opensmile_feature_set, nj.
#
#   data/iemocap_all_mfcc26              26 MFCC with DeepSpeech's framing (the CTC model's input)
#   data/iemocap_all_ds_<net>_<layer>    the model's <layer> output per 20 ms frame (paper 2: layer_1, 2048 dims
#                                        at paper size), Kaldi ark + scp (steps/ctc/make_bottleneck_features.sh)
#   data/iemocap_all_<feature set>       openSMILE functionals, one row per utterance (steps/make_opensmile.sh)
# The emotion sets (iemocap_agree, iemocap_4cls_exc, ...) are subsets: utils/copy_feats_from.sh gives them
# these features.
set -euo pipefail
config=conf/mini.yaml
cd "$(dirname "$0")/../.."
. utils/recipe_config.sh

model=$exp_dir/ctc/ds_$ctc_net/final.pt
[ -f $model ] || { echo "$0: no $model; run stage 8 first" >&2; exit 1; }
utils/copy_data_dir.sh $data_dir/iemocap_all $data_dir/iemocap_all_mfcc26
steps/make_mfcc.sh --nj "$nj" --cmd "$train_cmd" --mfcc-config "$ctc_mfcc_config" --compress "$features_compress" \
  $data_dir/iemocap_all_mfcc26 $exp_dir/make_mfcc/iemocap_all_mfcc26 $mfcc_dir
steps/ctc/make_bottleneck_features.sh --nj "$nj" --cmd "$train_cmd" "$ctc_layer" $data_dir/iemocap_all_mfcc26 \
  $data_dir/iemocap_all_ds_${ctc_net}_$ctc_layer $model $exp_dir/make_bnf/iemocap_all_ds_${ctc_net}_$ctc_layer \
  $mfcc_dir/ds_${ctc_net}_$ctc_layer
steps/make_opensmile.sh --nj "$nj" --cmd "$train_cmd" --feature-set "$paper2_opensmile_feature_set" \
  $data_dir/iemocap_all $data_dir/iemocap_all_$paper2_opensmile_feature_set $exp_dir/make_opensmile/iemocap_all $mfcc_dir/opensmile
