#!/usr/bin/env bash
# Paper 1 (Zhou & Beigi), stage 7: emotion recognition by transfer from the LF-MMI-pretrained TDNN-F.
#
#   local/ser/run_tdnn.sh [--config conf/mini.yaml] [--nj N] [--device auto|cpu|cuda]
#
# Reads the ser: section of the recipe config.  Systems (exp/ser/<system>/):
#   tdnn_l12          head on $ser_layer (tdnnf12), per-speaker online i-vectors, every fold   (Table 3)
#   tdnn_l13          head on tdnnf13, the layer-selection folds (Ses05)                         (Table 2)
#   tdnn_prefinal     head on $ser_prefinal_layer (prefinal-l), the layer-selection folds        (Table 2)
#   tdnn_scratch      the same network from random initialisation, every layer at the full rate (Table 3)
#   tdnn_l12_uttivec  as tdnn_l12 with per-utterance online i-vectors (what one recording gets)
# Steps: folds (steps/ser/make_folds.sh); one job per (system, fold), $nj at once through $train_cmd:
# steps/ser/train.sh then steps/ser/decode.sh, logs in exp/ser/<system>/<fold>/log/; per system
# steps/ser/write_meta.sh and steps/ser/score.sh (which also regenerates exp/results.md);
# exp/ser/table2.md, table3.md.
# Resumable: a fold whose results were made by the same commands is skipped, an unfinished training
# resumes from its checkpoint; outputs are written atomically.
set -euo pipefail

config=conf/mini.yaml
cli_nj=
cli_device=
while [ $# -gt 0 ]; do
  case "$1" in
    --config) config=$2; shift 2 ;;
    --nj) cli_nj=$2; shift 2 ;;
    --device) cli_device=$2; shift 2 ;;
    *) echo "usage: $0 [--config conf/X.yaml] [--nj N] [--device auto|cpu|cuda]" >&2; exit 1 ;;
  esac
done
cd "$(dirname "$0")/../.."
. ./path.sh
. ./cmd.sh
eval "$(python -m ser.config "$config")"
nj=${cli_nj:-${nj:-2}}
device=${cli_device:-${device:-auto}}

data=data/$ser_set
model=$ser_model
for f in $model $data/feats.scp $data/utt2emo $ser_ivector_dir/ivector_online.scp \
         $ser_utt_ivector_dir/ivector_online.scp; do
  [ -f "$f" ] || { echo "$0: expected $f to exist (stages 1-6)" >&2; exit 1; }
done

steps/ser/make_folds.sh --protocol "$ser_protocol" --num-valid-speakers "$ser_num_valid_speakers" \
  --seed "$ser_seed" $data
foldsdir=$data/folds/$ser_protocol
all_folds=$(find $foldsdir -mindepth 1 -maxdepth 1 -type d -printf '%f\n' | sort | tr '\n' ' ')

# per-system options
system_folds() {
  case $1 in tdnn_l13|tdnn_prefinal) echo "$ser_layer_selection_folds" ;; *) echo "$all_folds" ;; esac
}
system_ivectors() {
  case $1 in *_uttivec) echo "$ser_utt_ivector_dir" ;; *) echo "$ser_ivector_dir" ;; esac
}
system_opts() {
  case $1 in
    tdnn_l12|tdnn_l12_uttivec) echo "--layer $ser_layer --primary-lr-factor $ser_primary_lr_factor" ;;
    tdnn_l13) echo "--layer tdnnf13 --primary-lr-factor $ser_primary_lr_factor" ;;
    tdnn_prefinal) echo "--layer $ser_prefinal_layer --primary-lr-factor $ser_primary_lr_factor" ;;
    tdnn_scratch) echo "--layer $ser_layer --primary-lr-factor 1.0 --from-scratch true" ;;
    *) echo "$0: unknown system $1" >&2; return 1 ;;
  esac
}
system_description() {
  case $1 in
    tdnn_l12) echo "pretrained TDNN-F up to $ser_layer + dense head, body at lr factor $ser_primary_lr_factor, per-speaker i-vectors" ;;
    tdnn_l13) echo "as tdnn_l12 on tdnnf13 (layer selection, paper 1 Table 2)" ;;
    tdnn_prefinal) echo "as tdnn_l12 on $ser_prefinal_layer (layer selection, paper 1 Table 2)" ;;
    tdnn_scratch) echo "the tdnn_l12 network from random initialisation, every layer at the full rate (no pretraining)" ;;
    tdnn_l12_uttivec) echo "as tdnn_l12 with per-utterance online i-vectors" ;;
  esac
}
train_common=(--labels "$ser_labels" --hidden-dim "$ser_hidden_dim" --num-epochs "$ser_num_epochs"
              --patience "$ser_patience" --initial-lrate "$ser_initial_lrate" --final-lrate "$ser_final_lrate"
              --chunk-width "$ser_chunk_width" --minibatch-size "$ser_minibatch_size"
              --seed "$ser_seed"
              --cache-frozen-body "$ser_cache_frozen_body" --device "$device" --num-threads 1)

# one job per (system, fold) that has no results made by the same commands
mkdir -p exp/ser/log
joblist=exp/ser/log/jobs.list
: > $joblist.tmp
for sys in $ser_systems; do
  iv=$(system_ivectors $sys)
  read -r -a opts <<< "$(system_opts $sys)"
  for fold in $(system_folds $sys); do
    [ -d $foldsdir/$fold ] || { echo "$0: no fold $fold in $foldsdir" >&2; exit 1; }
    d=exp/ser/$sys/$fold
    mkdir -p $d/log
    {
      echo "set -e"
      printf '%q ' steps/ser/train.sh "${train_common[@]}" "${opts[@]}" $foldsdir/$fold $iv $model $d
      printf '> %q 2>&1 || { tail -n 4 %q; echo "training failed, see %q"; exit 1; }\n' \
        $d/log/train.log $d/log/train.log $d/log/train.log
      printf '%q ' steps/ser/decode.sh --device "$device" \
        $foldsdir/$fold/test $iv $d
      printf '> %q 2>&1 || { tail -n 4 %q; echo "decoding failed, see %q"; exit 1; }\n' \
        $d/log/decode.log $d/log/decode.log $d/log/decode.log
    } > $d/cmd.sh
    if [ -f $d/test.json ] && [ -f $d/cmd.done ] && cmp -s $d/cmd.sh $d/cmd.done \
       && [ ! $model -nt $d/test.json ] && [ ! $foldsdir/folds.json -nt $d/test.json ]; then
      continue
    fi
    echo "$d" >> $joblist.tmp
  done
done
mv $joblist.tmp $joblist
njobs=$(wc -l < $joblist)
echo "stage 7: $njobs of the (system, fold) trainings to run, $nj at a time (logs: exp/ser/<system>/<fold>/log/)"
if [ "$njobs" -gt 0 ]; then
  if ! $train_cmd --max-jobs-run "$nj" JOB=1:$njobs exp/ser/log/job.JOB.log \
      "d=\$(awk -v n=JOB 'NR == n' $joblist); bash \$d/cmd.sh && cp \$d/cmd.sh \$d/cmd.done"; then
    grep -h "failed, see" exp/ser/log/job.*.log >&2 || true
    exit 1
  fi
fi

for sys in $ser_systems; do
  folds=$(system_folds $sys)
  newer=$(for f in $folds; do find exp/ser/$sys/$f/test.json -newer exp/ser/$sys/results.json; done 2>/dev/null || true)
  if [ -f exp/ser/$sys/results.json ] && [ -z "$newer" ]; then continue; fi
  { steps/ser/write_meta.sh --set "$ser_set" --protocol "$ser_protocol" --folds "$folds" \
      --description "$(system_description $sys)" exp/ser/$sys \
    && steps/ser/score.sh $data exp/ser/$sys; } > exp/ser/log/score_$sys.log 2>&1 \
    || { tail -n 3 exp/ser/log/score_$sys.log >&2; echo "$0: scoring failed, see exp/ser/log/score_$sys.log" >&2; exit 1; }
  tail -n 1 exp/ser/log/score_$sys.log
done
# exp/results.md is regenerated by each scoring
python -m ser.bin.make_ser_tables --table2-fold "${ser_layer_selection_folds%% *}" exp/ser
cat exp/ser/table3.md
