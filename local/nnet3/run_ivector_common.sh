#!/usr/bin/env bash
# Stage 4 of run.sh: online i-vectors for the TDNN-F (Kaldi egs/tedlium/s5_r2/local/nnet3/run_ivector_common.sh,
# stages 3-6; speed/volume perturbation and hires MFCC are run.sh stage 3).
#   local/nnet3/run_ivector_common.sh [--config conf/mini.yaml]     (from the recipe directory)
# Config: ivector.{num_gauss,dim,num_iters,ubm_num_frames}, nj, device.
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
. ./path.sh
. ./cmd.sh
. utils/parse_options.sh
cfg=$(python -m ser.config "$config") || exit 1
eval "$cfg"

ie=exp/nnet3/extractor
mkdir -p exp/nnet3/log
if [ ! -f $ie/final.ie.pt ]; then
  awk 'NR % 4 == 1' data/tedlium_train_sp/utt2spk > exp/nnet3/train_subset.list
  utils/subset_data_dir.sh --utt-list exp/nnet3/train_subset.list data/tedlium_train_sp data/tedlium_train_sp_subset
  $train_cmd exp/nnet3/log/pca.log steps/online/get_pca_transform.sh --num-threads 1 --device "$device" \
    data/tedlium_train_sp_subset exp/nnet3/pca
  $train_cmd exp/nnet3/log/diag_ubm.log steps/online/train_diag_ubm.sh --num-threads 1 --device "$device" \
    --num-frames "$ivector_ubm_num_frames" data/tedlium_train_sp_subset "$ivector_num_gauss" exp/nnet3/pca \
    exp/nnet3/diag_ubm
  $train_cmd exp/nnet3/log/extractor.log steps/online/train_ivector_extractor.sh --num-threads 1 --device "$device" \
    --ivector-dim "$ivector_dim" --num-iters "$ivector_num_iters" data/tedlium_train_sp exp/nnet3/diag_ubm $ie
fi
for x in tedlium_train_sp_comb tedlium_dev tedlium_test iemocap_all; do
  opts=""; [ $x = tedlium_train_sp_comb ] && opts="--utts-per-spk-max 2"   # pseudo-speakers of 2 utterances
  if [ ! -f exp/nnet3/ivectors_$x/ivector_online.scp ] || [ data/$x/feats.scp -nt exp/nnet3/ivectors_$x/ivector_online.scp ]; then
    $train_cmd exp/nnet3/log/ivectors_$x.log steps/online/extract_ivectors_online.sh --nj "$nj" --device "$device" \
      $opts data/$x $ie exp/nnet3/ivectors_$x
  fi
  echo "exp/nnet3/ivectors_$x: $(wc -l < exp/nnet3/ivectors_$x/ivector_online.scp) utterances"
done
# IEMOCAP both ways: per speaker with carry-over across the speaker's turns (above, as Kaldi's decoding) and
# per utterance (--utts-per-spk-max 1: what one recording gets at inference; no turn borrows from another)
if [ ! -f exp/nnet3/ivectors_iemocap_all_utt/ivector_online.scp ] || \
   [ data/iemocap_all/feats.scp -nt exp/nnet3/ivectors_iemocap_all_utt/ivector_online.scp ]; then
  $train_cmd exp/nnet3/log/ivectors_iemocap_all_utt.log steps/online/extract_ivectors_online.sh --nj "$nj" \
    --device "$device" --utts-per-spk-max 1 data/iemocap_all $ie exp/nnet3/ivectors_iemocap_all_utt
fi
echo "exp/nnet3/ivectors_iemocap_all_utt: $(wc -l < exp/nnet3/ivectors_iemocap_all_utt/ivector_online.scp) utterances"
