#!/usr/bin/env bash
# ser recipe: speech emotion recognition by transfer learning from ASR (Kaldi egs/*/s5 style).
#
#   ./run.sh                           # all stages on the embedded corpora (conf/mini.yaml)
#   ./run.sh --stage 3                 # resume from stage 3
#   ./run.sh --stage 1 --stop-stage 1  # one stage
#   ./run.sh --config conf/paper.yaml  # paper 1's configuration (point its corpora: at real copies)
#
# Stages (each idempotent; outputs appear only when complete; logs under exp/**/log/):
#   0  embedded corpora (espeak-ng), skipped when the config points at real corpora
#   1  data prep: TED-LIUM -> data/tedlium_{train,dev,test}; IEMOCAP -> data/iemocap_*
#   2  lang: lexicon from TEDLIUM.152k.dic (+ cmudict), phones, chain topology -> data/lang_chain
#   3  40-dim hires MFCC; TED-LIUM train speed (0.9/1.0/1.1) + volume perturbed -> data/tedlium_train_sp
#   4  online i-vectors: PCA, diag UBM, extractor on the ASR training data; extraction -> exp/ivectors_*
#   5  chain prep: phone LM, den graph, numerator supervision -> exp/chain
#   6  LF-MMI pretraining of the TDNN-F: flat start on whole utterances (exp/chain/tdnn_e2e), alignment,
#      then tdnn_1g chunk training (exp/chain/tdnn); phone error rates on dev/test
#   7  paper 1: emotion head grafted on the pretrained TDNN-F, session folds, frame training, voting;
#      tdnn_l12 / l13 / prefinal / scratch / l12_uttivec -> exp/ser/*, exp/ser/table{2,3}.md, exp/results.md
set -euo pipefail

stage=0
stop_stage=100
config=conf/mini.yaml

usage() {
  cat >&2 <<EOF
Usage: $0 [--stage N] [--stop-stage M] [--config conf/X.yaml]
  --stage N         first stage to run (default $stage)
  --stop-stage M    last stage to run (default: all)
  --config FILE     recipe configuration (default $config)
EOF
  exit 1
}

while [ $# -gt 0 ]; do
  case "$1" in
    --stage) [ $# -ge 2 ] || usage; stage=$2; shift 2 ;;
    --stop-stage|--stop_stage) [ $# -ge 2 ] || usage; stop_stage=$2; shift 2 ;;
    --config) [ $# -ge 2 ] || usage; config=$2; shift 2 ;;
    -h|--help) usage ;;
    *) echo "$0: unknown option $1" >&2; usage ;;
  esac
done
[[ $stage =~ ^[0-9]+$ && $stop_stage =~ ^[0-9]+$ ]] || { echo "$0: --stage/--stop-stage must be integers" >&2; usage; }

cd "$(dirname "$0")"
[ -x .venv/bin/python ] || { echo "$0: no .venv; run tools/install.sh first" >&2; exit 1; }
. ./path.sh
. ./cmd.sh
eval "$(python -m ser.config "$config")"

nj=${nj:-2}
mkdir -p exp/log
banner() { echo "==== stage $1: $2 ($(date +%T)) ===="; }
run_stage() { [ "$stage" -le "$1" ] && [ "$stop_stage" -ge "$1" ]; }
start=$SECONDS

if run_stage 0; then
  banner 0 "embedded corpora"
  if [ "$corpora_synthesize" = true ]; then
    python local/make_mini_corpora.py --out "$corpora_root" --seed "$corpora_seed" \
      --tedlium-train-minutes "$corpora_tedlium_train_minutes" --iemocap-turns "$corpora_iemocap_turns" \
      2>&1 | tee exp/log/make_mini_corpora.log
  else
    echo "corpora: synthesize=false; using $corpora_tedlium and $corpora_iemocap"
  fi
fi

if run_stage 1; then
  banner 1 "data preparation"
  python local/prepare_tedlium.py "$corpora_tedlium" data > exp/log/prepare_tedlium.log 2>&1 \
    || { tail -n 3 exp/log/prepare_tedlium.log >&2; echo "stage 1 failed, see exp/log/prepare_tedlium.log" >&2; exit 1; }
  grep '^tedlium_' exp/log/prepare_tedlium.log
  python local/prepare_iemocap.py "$corpora_iemocap" data > exp/log/prepare_iemocap.log 2>&1 \
    || { tail -n 3 exp/log/prepare_iemocap.log >&2; echo "stage 1 failed, see exp/log/prepare_iemocap.log" >&2; exit 1; }
  grep '^iemocap_' exp/log/prepare_iemocap.log
fi

if run_stage 2; then
  banner 2 "lang (lexicon, phones, chain topology)"
  python local/prepare_dict.py --text data/tedlium_train/text "$corpora_tedlium/TEDLIUM.152k.dic" data/local/dict \
    > exp/log/prepare_dict.log 2>&1 || { tail -n 3 exp/log/prepare_dict.log >&2; exit 1; }
  steps/prepare_lang_chain.sh data/local/dict "<unk>" data/lang_chain > exp/log/prepare_lang_chain.log 2>&1 \
    || { tail -n 3 exp/log/prepare_lang_chain.log >&2; exit 1; }
  echo "data/lang_chain: $(grep -vc '^<eps>' data/lang_chain/phones.txt) phones, $(wc -l < data/lang_chain/words.txt) words"
fi

if run_stage 3; then
  banner 3 "hires MFCC (+ speed/volume perturbation of the ASR training data)"
  utils/perturb_data_dir_speed_3way.sh --factors "$features_speed_perturb" data/tedlium_train data/tedlium_train_sp
  if [ "$features_volume_perturb" = true ]; then
    utils/perturb_data_dir_volume.sh data/tedlium_train_sp
  fi
  for x in tedlium_train_sp tedlium_dev tedlium_test iemocap_all; do
    steps/make_mfcc.sh --nj "$nj" --cmd "$train_cmd" --mfcc-config "$features_mfcc_config" \
      data/$x exp/make_mfcc/$x mfcc
  done
  # the emotion sets are views of iemocap_all: give them its features
  for x in iemocap_4cls_exc iemocap_4cls_hapexc iemocap_impro_agree; do
    utils/copy_feats_from.sh data/iemocap_all data/$x
  done
fi

if run_stage 4; then
  banner 4 "online i-vectors (PCA, ${ivector_num_gauss}-Gaussian diag UBM, ${ivector_dim}-dim extractor)"
  ie=exp/nnet3/extractor
  if [ ! -f $ie/final.ie.pt ]; then
    # UBM and PCA on a quarter of the training utterances, extractor on all (run_ivector_common.sh)
    mkdir -p exp/nnet3/log
    awk 'NR % 4 == 1' data/tedlium_train_sp/utt2spk > exp/nnet3/train_subset.list
    utils/subset_data_dir.sh --utt-list exp/nnet3/train_subset.list data/tedlium_train_sp data/tedlium_train_sp_subset
    steps/online/get_pca_transform.sh --num-threads 1 data/tedlium_train_sp_subset exp/nnet3/pca \
      > exp/nnet3/log/pca.log 2>&1 || { tail -n 3 exp/nnet3/log/pca.log >&2; exit 1; }
    steps/online/train_diag_ubm.sh --num-threads 1 --num-frames "$ivector_ubm_num_frames" \
      data/tedlium_train_sp_subset "$ivector_num_gauss" exp/nnet3/pca exp/nnet3/diag_ubm \
      > exp/nnet3/log/diag_ubm.log 2>&1 || { tail -n 3 exp/nnet3/log/diag_ubm.log >&2; exit 1; }
    steps/online/train_ivector_extractor.sh --num-threads 1 --ivector-dim "$ivector_dim" --num-iters "$ivector_num_iters" \
      data/tedlium_train_sp exp/nnet3/diag_ubm $ie > exp/nnet3/log/extractor.log 2>&1 \
      || { tail -n 3 exp/nnet3/log/extractor.log >&2; exit 1; }
  fi
  for x in tedlium_train_sp tedlium_dev tedlium_test iemocap_all; do
    opts=""; [ $x = tedlium_train_sp ] && opts="--utts-per-spk-max 2"   # pseudo-speakers of 2 utterances
    if [ ! -f exp/nnet3/ivectors_$x/ivector_online.scp ] || [ data/$x/feats.scp -nt exp/nnet3/ivectors_$x/ivector_online.scp ]; then
      steps/online/extract_ivectors_online.sh --nj "$nj" $opts data/$x $ie exp/nnet3/ivectors_$x \
        > exp/nnet3/log/ivectors_$x.log 2>&1 || { tail -n 3 exp/nnet3/log/ivectors_$x.log >&2; exit 1; }
    fi
    echo "exp/nnet3/ivectors_$x: $(wc -l < exp/nnet3/ivectors_$x/ivector_online.scp) utterances"
  done
fi

if run_stage 5; then
  banner 5 "chain prep (phone LM, den graph, numerator supervision)"
  mkdir -p exp/chain/log
  steps/chain/prepare_e2e.sh --type "$chain_type" --num-extra-lm-states "$chain_num_extra_lm_states" \
    data/tedlium_train_sp data/lang_chain exp/chain 2> exp/chain/log/prepare_e2e.stderr.log \
    || { tail -n 3 exp/chain/log/prepare_e2e.stderr.log >&2; exit 1; }
fi

if run_stage 6; then
  banner 6 "LF-MMI pretraining of the ${chain_net} TDNN-F (flat start, alignment, chunk training)"
  train_opts=(--config "$chain_net" --device "$device" --frames-per-iter "$chain_frames_per_iter"
              --num-valid-utts "$chain_num_valid_utts" --optimizer "$chain_optimizer"
              --dropout-schedule "$chain_dropout_schedule"
              --initial-effective-lrate "$chain_initial_effective_lrate"
              --final-effective-lrate "$chain_final_effective_lrate")
  ivdir=exp/nnet3/ivectors_tedlium_train_sp
  mkdir -p exp/chain/log
  # pass 1: flat-start ("end-to-end") LF-MMI on whole utterances (Hadian et al. 2018)
  steps/train_chain.sh "${train_opts[@]}" --egs-type e2e --num-epochs "$chain_e2e_num_epochs" \
    --e2e-minibatch-size "$chain_e2e_minibatch_size" \
    data/tedlium_train_sp $ivdir exp/chain data/lang_chain exp/chain/tdnn_e2e 2> exp/chain/log/train_e2e.log \
    || { tail -n 3 exp/chain/log/train_e2e.log >&2; echo "see exp/chain/tdnn_e2e/log/" >&2; exit 1; }
  # phone alignments from the flat-start model give the chunks their numerators
  steps/chain/align.sh --device "$device" --online-ivector-dir $ivdir data/tedlium_train_sp exp/chain \
    exp/chain/tdnn_e2e/final.pt exp/chain/ali_e2e 2> exp/chain/log/align.log \
    || { tail -n 3 exp/chain/log/align.log >&2; exit 1; }
  # pass 2: the tdnn_1g recipe proper: 150/111/102-frame chunks, frame shifts, one i-vector per chunk;
  # it starts from the flat-start model (same pdfs; Kaldi would build a tree and start afresh)
  steps/train_chain.sh "${train_opts[@]}" --egs-type chunk --ali exp/chain/ali_e2e/ali.pt \
    --input-model exp/chain/tdnn_e2e/final.pt \
    --num-epochs "$chain_num_epochs" --num-chunk-per-minibatch "$chain_num_chunk_per_minibatch" \
    data/tedlium_train_sp $ivdir exp/chain data/lang_chain exp/chain/tdnn 2> exp/chain/log/train.log \
    || { tail -n 3 exp/chain/log/train.log >&2; echo "see exp/chain/tdnn/log/" >&2; exit 1; }
  for x in dev test; do
    steps/chain/decode_per.sh --device "$device" --online-ivector-dir exp/nnet3/ivectors_tedlium_$x \
      --train-text data/tedlium_train/text exp/chain/tdnn/final.pt data/tedlium_$x exp/chain data/lang_chain \
      exp/chain/tdnn/decode_$x > exp/chain/tdnn/log/decode_$x.log 2>&1 \
      || { tail -n 3 exp/chain/tdnn/log/decode_$x.log >&2; exit 1; }
    echo "tedlium_$x: $(cat exp/chain/tdnn/decode_$x/per.txt)   (no acoustics: $(cat exp/chain/tdnn/decode_$x/per_lm_only.txt))"
  done
fi

if run_stage 7; then
  banner 7 "paper 1: emotion recognition by transfer from the TDNN-F (exp/ser)"
  local/ser/run_tdnn.sh --config "$config" --nj "$nj" --device "$device"
fi

echo "run.sh: stages $stage..$stop_stage done in $((SECONDS - start)) s"
