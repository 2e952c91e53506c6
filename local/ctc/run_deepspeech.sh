#!/usr/bin/env bash
# Stage 8 of run.sh: paper 2's DeepSpeech-style acoustic model, trained with CTC on the TED-LIUM training data.
#   local/ctc/run_deepspeech.sh [--config conf/mini.yaml]     (from the recipe directory; needs stage 1)
# Config: ctc.* (net, MFCC options, training set, epochs, learning rate, minibatch frames, held-out utterances),
# nj, device.
#
#   features  26 MFCC with DeepSpeech's 32 ms / 20 ms framing (ctc.mfcc_config) of tedlium_{train,dev,test}
#             -> data/tedlium_*_mfcc26 (copies of the data dirs with these features)
#   train     CTC, Adam 1e-3 (DeepSpeech v0.9), ctc.num_valid_utts training utterances held out for the curve
#             -> exp/ctc/ds_<net>/{final.pt,log/train.log,report/training_curve.png}
#   decode    greedy CTC decoding, CER / WER against the all-blank output -> exp/ctc/ds_<net>/decode_{dev,test}
#
# The training set is ctc.train_set (tedlium_train: DeepSpeech trains without speed perturbation by default,
# and the 3x perturbed copies would triple the time of a pass).
#
# Results, conf/mini.yaml on the embedded TED-LIUM, ./run.sh from a fresh clone (857,885 parameters, 6 passes,
# 654 minibatches): held-out CTC loss 0.312 per frame; greedy %CER dev 42.23 / test 47.46, %WER dev 104.29 /
# test 106.53 (all blank: 100 / 100; no language model, so most words carry a character error).  Stage 8 took
# 2 min 9 s on 2 idle cores.  conf/paper.yaml: unmeasured.
set -euo pipefail
config=conf/mini.yaml
cd "$(dirname "$0")/../.."
. utils/recipe_config.sh

dir=$exp_dir/ctc/ds_$ctc_net
mkdir -p $dir/log
for x in $ctc_train_set tedlium_dev tedlium_test; do
  utils/copy_data_dir.sh $data_dir/$x $data_dir/${x}_mfcc26
  steps/make_mfcc.sh --nj "$nj" --cmd "$train_cmd" --mfcc-config "$ctc_mfcc_config" --compress "$features_compress" \
    $data_dir/${x}_mfcc26 $exp_dir/make_mfcc/${x}_mfcc26 $mfcc_dir
done

# training and each decoding are redone unless their stamps (ser.io.stamp) record the same command and
# inputs; a training killed with the same options resumes from its checkpoint, with others it starts again
stamp=(python -m ser.bin.stamp)
train=$data_dir/${ctc_train_set}_mfcc26
step=(steps/ctc/train.sh --net "$ctc_net" --device "$device"
      --epochs "$ctc_epochs" --learning-rate "$ctc_learning_rate" --max-frames "$ctc_max_frames"
      --num-valid-utts "$ctc_num_valid_utts" --valid-interval "$ctc_valid_interval" --dropout-rate "$ctc_dropout_rate"
      $train $dir)
"${stamp[@]}" run $dir/.stamp --opt "step=${step[*]}" $train/.feats.stamp $train/feats.scp $train/text \
  --stale $dir/final.pt --stale $dir/checkpoint.pt -- $cuda_cmd $(job_opts chain_train) $dir/log/train_ctc.log "${step[@]}"
grep '^train_ctc:' $dir/log/train_ctc.log

for x in dev test; do
  step=(steps/ctc/decode.sh --device "$device" $dir/final.pt $data_dir/tedlium_${x}_mfcc26 $dir/decode_$x)
  "${stamp[@]}" run $dir/decode_$x/.stamp --opt "step=${step[*]}" $dir/.stamp $data_dir/tedlium_${x}_mfcc26/.feats.stamp \
    $data_dir/tedlium_${x}_mfcc26/feats.scp $data_dir/tedlium_${x}_mfcc26/text -- $decode_cmd $(job_opts decode) $dir/log/decode_$x.log "${step[@]}"
  grep '^decode_ctc:' $dir/log/decode_$x.log
done
