#!/usr/bin/env bash
# Stage 6 of run.sh: LF-MMI pretraining of the TDNN-F on TED-LIUM (Kaldi egs/tedlium/s5_r2/local/chain/run_tdnn.sh
# -> tuning/run_tdnn_1g.sh, preceded by a flat-start pass as egs/wsj/s5/local/chain/e2e/run_tdnn_flatstart.sh).
#   local/chain/run_tdnn.sh [--config conf/mini.yaml]     (from the recipe directory; needs stages 3-5)
# Config: chain.* (net, epochs, learning rates, minibatches, dropout), device.
#
#   pass 1  flat-start LF-MMI on whole utterances with the numerators of stage 5  -> exp/chain/tdnn_e2e
#   align   Viterbi through each utterance's numerator graph with the pass-1 model -> exp/chain/ali_e2e
#   pass 2  tdnn_1g proper: 150/111/102-frame chunks, frame shifts 0/1/2, one i-vector per chunk, numerators
#           from the alignment; starts from the pass-1 model (same pdfs; Kaldi builds a tree and starts afresh)
#   decode  best path through the den graph -> phones; PER on dev/test       -> exp/chain/tdnn/decode_{dev,test}
#
# Results, conf/mini.yaml on the embedded corpora, ./run.sh from a fresh clone (mini network: 636,692 parameters,
# 906 pdfs, context 28/28; CPU; short segments combined, Kaldi's xent rates and max-change x2 under Adam,
# BatchNorm stats recomputed; stage 6 took 7 min 35 s on 2 idle cores):
#   pass 1   606 minibatches, 5 iterations; final train/valid log-prob -0.0920/-0.1090, xent -3.009/-3.078
#   align    2841 utterances
#   pass 2   280 minibatches, 5 iterations; final train/valid log-prob -0.0339/-0.0494, xent -1.743/-1.883
#   %PER     dev 35.97 [ 1076 / 2991, 167 ins, 151 del, 758 sub ]   test 36.17 [ 996 / 2754, 163 ins, 114 del, 719 sub ]
#   without acoustics: phone LM alone dev 96.39 / test 96.48; most frequent phone dev 91.94 / test 92.30
#   Run to run: the fresh clone before (i-vectors and the denominator's scaling 1 ulp apart) gave dev 36.78 / test
#   40.31, pass 2 -0.0360/-0.0535; one earlier (numerators 1 ulp apart, see ser/chain/prepare_e2e.py) dev 36.51 /
#   test 37.07: on ~3000 phones the PER moves by 1-4 points between such runs.
#   (before the fidelity changes: dev 36.51 / test 38.02; pass 2 final -0.0277/-0.0403, xent -1.307/-1.396, README)
# conf/paper.yaml (tdnn_1g: 9,431,072 parameters with 3600 pdfs, as Kaldi's; 2 + 6 epochs) on the real TED-LIUM:
# unmeasured.
set -euo pipefail
config=conf/mini.yaml
cd "$(dirname "$0")/../.."
. utils/recipe_config.sh

train_opts=(--net "$chain_net" --device "$device" --frames-per-iter "$chain_frames_per_iter"
            --num-valid-utts "$chain_num_valid_utts" --optimizer "$chain_optimizer"
            --dropout-schedule "$chain_dropout_schedule"
            --initial-effective-lrate "$chain_initial_effective_lrate"
            --final-effective-lrate "$chain_final_effective_lrate")
train_data=data/tedlium_train_sp_comb   # short segments combined (run.sh stage 3)
ivdir=exp/nnet3/ivectors_tedlium_train_sp_comb
mkdir -p exp/chain/log
# Each step is redone unless its stamp (ser.io.stamp, written when it succeeds) records the same command
# line and inputs, upstream stamps included.  A training run killed with the same options resumes from
# its checkpoint; with other options its checkpoint is dropped (--stale) and it starts again.
stamp=(python -m ser.bin.stamp)
train_in=($train_data/feats.scp $train_data/text $train_data/utt2spk data/tedlium_train_sp/.feats.stamp $ivdir/.stamp
          exp/chain/den.stamp exp/chain/num.stamp)

# pass 1: flat-start ("end-to-end") LF-MMI on whole utterances (Hadian et al. 2018)
step=(steps/train_chain.sh "${train_opts[@]}" --egs-type e2e
      --num-epochs "$chain_e2e_num_epochs" --e2e-minibatch-size "$chain_e2e_minibatch_size"
      $train_data $ivdir exp/chain exp/chain/tdnn_e2e)
"${stamp[@]}" run exp/chain/tdnn_e2e/.stamp --opt "step=${step[*]}" "${train_in[@]}" \
  --stale exp/chain/tdnn_e2e/checkpoint.pt -- $cuda_cmd $(job_opts chain_train) exp/chain/log/train_e2e.log "${step[@]}"
grep '^train_chain:' exp/chain/log/train_e2e.log

# phone alignments from the flat-start model give the chunks their numerators
step=(steps/chain/align.sh --device "$device" --online-ivector-dir $ivdir
      $train_data exp/chain exp/chain/tdnn_e2e/final.pt exp/chain/ali_e2e)
"${stamp[@]}" run exp/chain/ali_e2e/.stamp --opt "step=${step[*]}" "${train_in[@]}" exp/chain/tdnn_e2e/.stamp \
  -- $cuda_cmd $(job_opts chain_train) exp/chain/log/align.log "${step[@]}"
grep '^chain_align:' exp/chain/log/align.log

# pass 2: the tdnn_1g recipe proper, from the pass-1 model
step=(steps/train_chain.sh "${train_opts[@]}" --egs-type chunk
      --ali exp/chain/ali_e2e/ali.pt --input-model exp/chain/tdnn_e2e/final.pt
      --num-epochs "$chain_num_epochs" --num-chunk-per-minibatch "$chain_num_chunk_per_minibatch"
      $train_data $ivdir exp/chain exp/chain/tdnn)
"${stamp[@]}" run exp/chain/tdnn/.stamp --opt "step=${step[*]}" "${train_in[@]}" exp/chain/ali_e2e/.stamp \
  --stale exp/chain/tdnn/checkpoint.pt -- $cuda_cmd $(job_opts chain_train) exp/chain/log/train.log "${step[@]}"
grep '^train_chain:' exp/chain/log/train.log

for x in dev test; do
  step=(steps/chain/decode_per.sh --device "$device"
        --online-ivector-dir exp/nnet3/ivectors_tedlium_$x --train-text data/tedlium_train/text
        exp/chain/tdnn/final.pt data/tedlium_$x exp/chain data/lang_chain exp/chain/tdnn/decode_$x)
  "${stamp[@]}" run exp/chain/tdnn/decode_$x/.stamp --opt "step=${step[*]}" exp/chain/tdnn/.stamp \
    data/tedlium_$x/.feats.stamp data/tedlium_$x/text exp/nnet3/ivectors_tedlium_$x/.stamp data/tedlium_train/text \
    exp/chain/den.stamp data/lang_chain/phones.txt data/lang_chain/lexiconp.txt \
    -- $decode_cmd $(job_opts decode) exp/chain/tdnn/log/decode_$x.log "${step[@]}"
  echo "tedlium_$x: $(cat exp/chain/tdnn/decode_$x/per.txt)   (no acoustics: $(cat exp/chain/tdnn/decode_$x/per_lm_only.txt))"
done
