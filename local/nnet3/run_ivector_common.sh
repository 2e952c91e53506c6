#!/usr/bin/env bash
# Stage 4 of run.sh: online i-vectors for the TDNN-F (Kaldi egs/tedlium/s5_r2/local/nnet3/run_ivector_common.sh,
# stages 3-6; speed/volume perturbation and hires MFCC are run.sh stage 3).
#   local/nnet3/run_ivector_common.sh [--config conf/mini.yaml]     (from the recipe directory)
# Config: ivector.{num_gauss,dim,num_iters,ubm_num_frames}, features.compress (the i-vector arks), nj, device,
# jobs.{ubm,extractor,ivector_extract}.
# The UBM and the extractor are trained by nj jobs per iteration (data split by speaker, statistics summed),
# as Kaldi's steps/online/nnet2/train_{diag_ubm,ivector_extractor}.sh (docs/ivector-training.md).
#
# PCA (splice +-3, 40 dims) and the diagonal UBM on a quarter of the training utterances, the extractor
# on all of them (Kaldi: LDA+MLLT needs GMM alignments, so PCA as steps/online/nnet2/get_pca_transform.sh);
# online i-vectors every 10 frames for every set; the ASR training data (short segments combined, run.sh
# stage 3) in pseudo-speakers of 2 utterances (Kaldi's utils/data/modify_speaker_info.sh --utts-per-spk-max 2),
# the others per speaker; IEMOCAP also per utterance (exp/nnet3/ivectors_iemocap_all_utt, README: i-vectors).
#
# Results, conf/mini.yaml on the embedded corpora (2 CPU cores, stage 4 in 1 min 51 s):
#   PCA              153,989 frames, kept 40 of 280 dims, 89.4% of the variance
#   diag UBM         128 Gaussians, log-likelihood per frame -59.25 (init 0) -> -45.65 (init 19) -> -45.60 (pass 3)
#   extractor        100 dims, auxf per frame -192.7 (iter 0) -> -34.82 (iter 9)
#   extraction       2841/62/59/1000/1000 utterances (train_sp_comb/dev/test/iemocap_all/iemocap_all_utt),
#                    420-1140x real time (nj 2)
#   speaker EER      iemocap_all, one i-vector per utterance (no speaker carry-over), cosine: 3.95% over
#                    49,567 target / 449,933 non-target trials
#                    (local/ivector_eer.sh --extractor-dir exp/nnet3/extractor data/iemocap_all)
# conf/paper.yaml: 512 Gaussians, 700,000 UBM frames (tedlium s5_r2's values): unmeasured here.
set -euo pipefail
config=conf/mini.yaml
cd "$(dirname "$0")/../.."
. utils/recipe_config.sh

# each output is redone unless its stamp (ser.io.stamp, written last) records the same options and inputs
stamp=(python -m ser.bin.stamp)
ie=$exp_dir/nnet3/extractor
train=$data_dir/tedlium_train_sp
ie_stamp=($ie/.stamp --opt "num_gauss=$ivector_num_gauss" --opt "dim=$ivector_dim" --opt "num_iters=$ivector_num_iters"
          --opt "ubm_num_frames=$ivector_ubm_num_frames" $train/feats.scp $train/utt2spk $train/.feats.stamp)
mkdir -p $exp_dir/nnet3/log
if ! "${stamp[@]}" check "${ie_stamp[@]}"; then
  "${stamp[@]}" clear "${ie_stamp[@]}"
  awk 'NR % 4 == 1' $train/utt2spk > $exp_dir/nnet3/train_subset.list
  utils/subset_data_dir.sh --utt-list $exp_dir/nnet3/train_subset.list $train ${train}_subset
  $train_cmd $(job_opts ubm) $exp_dir/nnet3/log/pca.log steps/online/get_pca_transform.sh \
    --num-threads "$jobs_ubm_num_threads" --device "$device" ${train}_subset $exp_dir/nnet3/pca
  # the trainers drive their jobs ($train_cmd JOB=1:$nj, logs exp/nnet3/{diag_ubm,extractor}/log/) from this
  # machine, as Kaldi's scripts do; the driver's own log is run.pl's (the local backend)
  $local_cmd $exp_dir/nnet3/log/diag_ubm.log steps/online/train_diag_ubm.sh --cmd "$train_cmd $(job_opts ubm)" \
    --nj "$nj" --num-threads "$jobs_ubm_num_threads" --device "$device" \
    --num-frames "$ivector_ubm_num_frames" ${train}_subset "$ivector_num_gauss" $exp_dir/nnet3/pca $exp_dir/nnet3/diag_ubm
  $local_cmd $exp_dir/nnet3/log/extractor.log steps/online/train_ivector_extractor.sh \
    --cmd "$train_cmd $(job_opts extractor)" --nj "$nj" --num-threads "$jobs_extractor_num_threads" \
    --device "$device" --ivector-dim "$ivector_dim" --num-iters "$ivector_num_iters" $train $exp_dir/nnet3/diag_ubm $ie
  "${stamp[@]}" write "${ie_stamp[@]}"
fi
# extract <data-dir> <ivector-dir> <utts-per-spk-max>: online i-vectors, redone when the extractor, the
# features, the speakers or the option change
extract() {
  local iv_stamp=($2/.stamp --opt "utts_per_spk_max=$3" --opt "compress=$features_compress" $ie/.stamp $1/feats.scp
                  $1/utt2spk $1/.feats.stamp)
  if ! "${stamp[@]}" check "${iv_stamp[@]}"; then
    "${stamp[@]}" clear "${iv_stamp[@]}"
    # one job of --nj worker threads, one per CPU it asks for
    $train_cmd $(job_opts ivector_extract) $exp_dir/nnet3/log/$(basename $2).log steps/online/extract_ivectors_online.sh \
      --nj "$jobs_ivector_extract_num_threads" --device "$device" --compress "$features_compress" \
      --utts-per-spk-max $3 $1 $ie $2
    "${stamp[@]}" write "${iv_stamp[@]}"
  fi
  echo "$2: $(wc -l < $2/ivector_online.scp) utterances"
}
for x in tedlium_train_sp_comb tedlium_dev tedlium_test iemocap_all; do
  upsm=-1; [ $x = tedlium_train_sp_comb ] && upsm=2   # pseudo-speakers of 2 utterances
  extract $data_dir/$x $exp_dir/nnet3/ivectors_$x $upsm
done
# IEMOCAP both ways: per speaker with carry-over across the speaker's turns (above, as Kaldi's decoding) and
# per utterance (--utts-per-spk-max 1: what one recording gets at inference; no turn borrows from another)
extract $data_dir/iemocap_all $exp_dir/nnet3/ivectors_iemocap_all_utt 1
