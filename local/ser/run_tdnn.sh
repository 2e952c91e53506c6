#!/usr/bin/env bash
# Paper 1 (Zhou & Beigi), stage 7: emotion recognition by transfer from the LF-MMI-pretrained TDNN-F.
#
#   local/ser/run_tdnn.sh [--config conf/mini.yaml] [--folds DIR --systems "S ..." --suffix _X]
#                                                         (from the recipe directory; needs stages 1-6)
#   --folds DIR       run on the folds of another set and protocol, made by another stage (stage 9 runs
#                     tdnn_l12 on paper 2's data/iemocap_agree/folds/speaker); default: make
#                     data/$ser_set/folds/$ser_protocol here
#   --systems "S ..." the systems to run (default: ser.systems)
#   --suffix _X       system directories exp/ser/<system>_X (default: none); the tables and the export are
#                     paper 1's and run only without --folds
# Config: ser.* (every choice below), nj (trainings at once), device.  Systems (exp/ser/<system>/):
#   tdnn_l12          head on $ser_layer (tdnnf12), per-speaker online i-vectors, every fold   (Table 3)
#   tdnn_l13          head on tdnnf13, the layer-selection folds (Ses05)                         (Table 2)
#   tdnn_prefinal     head on $ser_prefinal_layer (prefinal-chain), the layer-selection folds    (Table 2)
#   tdnn_scratch      the same network from random initialisation, every layer at the full rate (Table 3)
#   tdnn_l12_uttivec  as tdnn_l12 with per-utterance online i-vectors (what one recording gets)
#   tdnn_l12_noivec   as tdnn_l12 without i-vectors: MFCC only, the pretrained body's i-vector input removed
#                     (ser.emotion.graft.without_ivector_input), paired with tdnn_l12 in exp/results.md
# Steps: folds (steps/ser/make_folds.sh); one job per (system, fold), $nj at once through $cuda_cmd:
# steps/ser/train.sh then steps/ser/decode.sh, logs in exp/ser/<system>/<fold>/log/; per system
# steps/ser/write_meta.sh and steps/ser/score.sh (which also regenerates exp/results.md);
# exp/ser/table1.md (the set's classes per session), table2.md, table3.md; tdnn_l12_uttivec exported (local/ser/export_tdnn.sh) and tested on the
# other corpus corpora.xcorpus (local/ser/score_xcorpus.sh -> exp/ser/tdnn_l12_uttivec_xcorpus).
# Resumable: a fold whose stamp records the same commands, model, folds and i-vectors is skipped (and a
# system's scoring whose stamp records the same fold stamps), an unfinished training resumes from its
# checkpoint; outputs are written atomically.
#
# Results, conf/mini.yaml on the embedded corpus (iemocap_4cls_exc, 554 turns; folds train/valid/test
# 373-397 / 49-57 / 104-124 turns; mini network, head 256, factor 0.25, at most 4 epochs, patience 2), stages 0-6
# of a fresh clone:
#   UA % per test session Ses01..Ses05                 mean UA ± std   mean WA   test frame acc
#   tdnn_l12          35.0  44.6  39.4  43.5  39.3        40.4 ± 3.9      38.1       40.5
#   tdnn_l12_uttivec  45.6  44.6  41.1  36.0  43.7        42.2 ± 3.9      38.3       37.2
#   tdnn_scratch      26.4  31.8  52.7  25.0  25.4        32.3 ± 11.7     31.7       28.9
#   transfer - scratch 8.6  12.8 -13.3  18.5  13.8         8.1
#   Table 2 (Ses05): test UA / valid UA  prefinal-l 40.3 / 41.0, tdnnf13 42.4 / 43.0, tdnnf12 39.3 / 45.2
#   (validation picks tdnnf12, as paper 1; measured with the prefinal row on prefinal-l, before it moved to
#   prefinal-chain: unmeasured there)
#   Run to run: the fresh clone before (stages 4 and 6 then differed in float rounding only: the i-vector
#   precisions summed in another order, the LF-MMI denominator's scaling applied elsewhere) gave tdnn_l12
#   35.4 ± 7.2, tdnn_l12_uttivec 43.3 ± 5.7, tdnn_scratch 30.7 ± 9.2: on ~110 test turns a fold moves by up
#   to ~10 points between such runs.
#   tdnn_l12_noivec, run later on a copy of a finished mini run (a655ecf: stages 0-6 and the other systems
#   as there, whose tdnn_l12 gave 38.0 47.5 25.6 36.4 31.4 = 35.8 ± 8.2):
#   tdnn_l12_noivec   48.9  37.7  56.9  46.3  28.5        43.7 ± 10.9     41.0       40.8
#   paired with that tdnn_l12: pooled UA 43.3 against 33.3, +9.9, paired speaker bootstrap p 5e-4 (Holm 0.0035):
#   on the embedded corpus the i-vectors (an extractor trained on 12 synthetic TED-LIUM voices) hurt.
#   Its cost: 42.6-54.6 s CPU per fold's training (3-4 epochs, 12.4-14.2 s an epoch; tdnn_l12 there
#   11.0-12.8 s an epoch) and ~5 s per decoding: ~280 CPU-s, about 2.3 min of stage 7 on 2 cores.
# Stage 7 took 5 min 19 s on 2 idle cores in the latest fresh clone (cross-corpus scoring included).  With at most 6 epochs it took 7 min 48 s and
# gave tdnn_l12 38.8 ± 8.4, tdnn_l12_uttivec 43.5 ± 5.9, tdnn_scratch 31.8 ± 9.1: 4 keeps the whole ./run.sh
# under 25 minutes.  conf/paper.yaml: unmeasured.
set -euo pipefail
config=conf/mini.yaml
folds=
systems=
suffix=
cd "$(dirname "$0")/../.."
. utils/recipe_config.sh

[ -n "$systems" ] || systems=$ser_systems
known_systems="tdnn_l12 tdnn_l13 tdnn_prefinal tdnn_scratch tdnn_l12_uttivec tdnn_l12_noivec"  # as ser.config.SER_SYSTEMS
for sys in $systems; do
  case " $known_systems " in *" $sys "*) ;; *) echo "$0: unknown system $sys (known: $known_systems)" >&2; exit 1 ;; esac
done
if [ -n "$folds" ]; then
  data=${folds%/folds/*}
  protocol=$(basename "$folds")
  [ -f "$folds/folds.json" ] && [ "$data" != "$folds" ] || { echo "$0: --folds $folds: expected <data-dir>/folds/<protocol> with folds.json" >&2; exit 1; }
  python -m ser.bin.make_ser_folds --check "$ser_labels" "$folds"   # disjoint speakers, every class
else
  data=$data_dir/$ser_set
  protocol=$ser_protocol
fi
set=$(basename "$data")
model=$ser_model
for f in "$model" "$data/feats.scp" "$data/utt2emo" "$ser_ivector_dir/ivector_online.scp" \
         "$ser_utt_ivector_dir/ivector_online.scp"; do
  [ -f "$f" ] || { echo "$0: expected $f to exist (stages 1-6)" >&2; exit 1; }
done

mkdir -p $exp_dir/ser/log
if [ -z "$folds" ]; then
  $train_cmd $exp_dir/ser/log/make_folds.log steps/ser/make_folds.sh --protocol "$ser_protocol" \
    --num-valid-speakers "$ser_num_valid_speakers" --seed "$ser_seed" $data
  grep "^$data_dir/" $exp_dir/ser/log/make_folds.log
fi
foldsdir=$data/folds/$protocol
all_folds=$(find $foldsdir -mindepth 1 -maxdepth 1 -type d -printf '%f\n' | sort | tr '\n' ' ')

# per-system options
system_folds() {  # Table 2's systems on paper 1's layer-selection folds, every other on all folds
  case $1 in tdnn_l13|tdnn_prefinal) [ -z "$folds" ] && echo "$ser_layer_selection_folds" && return ;; esac
  echo "$all_folds"
}
system_ivectors() {  # none: no i-vector input (train_ser, decode_ser)
  case $1 in *_uttivec) echo "$ser_utt_ivector_dir" ;; *_noivec) echo none ;; *) echo "$ser_ivector_dir" ;; esac
}
system_opts() {
  case $1 in
    tdnn_l12|tdnn_l12_uttivec|tdnn_l12_noivec) echo "--layer $ser_layer --primary-lr-factor $ser_primary_lr_factor" ;;
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
    tdnn_l12_noivec) echo "as tdnn_l12 without i-vectors (MFCC only; the body's i-vector input removed)" ;;
  esac
}
train_common=(--labels "$ser_labels" --hidden-dim "$ser_hidden_dim" --num-epochs "$ser_num_epochs"
              --patience "$ser_patience" --initial-lrate "$ser_initial_lrate" --final-lrate "$ser_final_lrate"
              --chunk-width "$ser_chunk_width" --minibatch-size "$ser_minibatch_size"
              --seed "$ser_seed"
              --cache-frozen-body "$ser_cache_frozen_body" --device "$device" --num-threads "$jobs_ser_train_num_threads")

# one job per (system, fold) whose stamp (ser.io.stamp, written when both steps succeeded) does not record
# the same commands, model, folds and i-vectors; each of its two steps runs through the local job runner
# into the fold's log/ (a failure names that log).  A fold last run with other inputs loses train_ser's
# options.json ("done" by options alone, --stale), so a changed model or fold trains again.
step=(python -m ser.jobs --backend local)
stamp=(python -m ser.bin.stamp)
fold_in=("$model" "$foldsdir/folds.json")
# each job is a script of one argv quoted with printf %q (exp/ser/log/jobs/<n>.sh), run as `bash <script>`:
# no config or data value reaches a shell string unquoted (README, design notes)
jobdir=$exp_dir/ser/log/jobs
rm -rf $jobdir; mkdir -p $jobdir
njobs=0
for sys in $systems; do
  iv=$(system_ivectors $sys)
  read -r -a opts <<< "$(system_opts $sys)"
  for fold in $(system_folds $sys); do
    [ -d "$foldsdir/$fold" ] || { echo "$0: no fold $fold in $foldsdir" >&2; exit 1; }
    d=$exp_dir/ser/$sys$suffix/$fold
    mkdir -p $d/log
    {
      echo "set -e"
      printf '%q ' "${step[@]}" $d/log/train.log steps/ser/train.sh "${train_common[@]}" "${opts[@]}" \
        "$foldsdir/$fold" "$iv" "$model" $d; echo
      printf '%q ' "${step[@]}" $d/log/decode.log steps/ser/decode.sh --device "$device" \
        --num-threads "$jobs_ser_train_num_threads" "$foldsdir/$fold/test" "$iv" $d; echo
    } > $d/cmd.sh
    iv_in=(); [ "$iv" = none ] || iv_in=("$iv/.stamp")
    if "${stamp[@]}" check $d/.stamp $d/cmd.sh "${fold_in[@]}" "${iv_in[@]}"; then continue; fi
    njobs=$((njobs + 1))
    { printf '%q ' "${stamp[@]}" run $d/.stamp $d/cmd.sh "${fold_in[@]}" "${iv_in[@]}" --stale $d/options.json \
        -- bash $d/cmd.sh; echo; } > $jobdir/$njobs.sh
  done
done
echo "stage 7: $njobs of the (system, fold) trainings to run, $nj at a time (logs: $exp_dir/ser/<system>/<fold>/log/)"
if [ "$njobs" -gt 0 ]; then
  # GPU jobs: each running one gets a GPU of its own (cmd.sh), on slurm --gres; memory and CPUs from jobs.ser_train
  $cuda_cmd $(job_opts ser_train) --max-jobs-run "$nj" JOB=1:$njobs $exp_dir/ser/log/job.JOB.log bash $jobdir/JOB.sh
fi

for sys in $systems; do
  dir=$exp_dir/ser/$sys$suffix
  sys_folds=$(system_folds $sys)
  score_in=($dir/.score.stamp --opt "set=$set" --opt "protocol=$protocol" --opt "folds=$sys_folds"
            --opt "description=$(system_description $sys)" $data/utt2emo $(for f in $sys_folds; do echo $dir/$f/.stamp; done))
  if "${stamp[@]}" check "${score_in[@]}"; then continue; fi
  "${stamp[@]}" clear "${score_in[@]}"
  $train_cmd $exp_dir/ser/log/write_meta_$sys$suffix.log steps/ser/write_meta.sh --set "$set" \
    --protocol "$protocol" --folds "$sys_folds" --description "$(system_description $sys)" $dir
  $train_cmd $exp_dir/ser/log/score_$sys$suffix.log steps/ser/score.sh $data $dir   # also $exp_dir/results.md
  "${stamp[@]}" write "${score_in[@]}"
  grep "^$sys$suffix: UA" $exp_dir/ser/log/score_$sys$suffix.log
done
[ -z "$folds" ] || exit 0
$train_cmd $exp_dir/ser/log/make_tables.log steps/ser/make_tables.sh --table2-fold "${ser_layer_selection_folds%% *}" \
  --set-dir $data --labels "$ser_labels" $exp_dir/ser
cat $exp_dir/ser/table1.md $exp_dir/ser/table3.md
# the deployed model (issue 14): tdnn_l12_uttivec once more on every session, exported for ser-infer
case " $systems " in *" tdnn_l12_uttivec "*)
  local/ser/export_tdnn.sh --config "$config" tdnn_l12_uttivec "$(system_ivectors tdnn_l12_uttivec)" \
    "${train_common[@]}" $(system_opts tdnn_l12_uttivec)
  # cross-corpus test of the export on corpora.xcorpus: exp/ser/tdnn_l12_uttivec_xcorpus, a row of exp/results.md
  local/ser/score_xcorpus.sh --config "$config" tdnn_l12_uttivec ;;
esac
