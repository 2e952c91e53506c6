#!/usr/bin/env bash
# Stage 6 of run.sh: LF-MMI pretraining of the TDNN-F on TED-LIUM (Kaldi egs/tedlium/s5_r2/local/chain/run_tdnn.sh
# -> tuning/run_tdnn_1g.sh, preceded by a flat-start pass as egs/wsj/s5/local/chain/e2e/run_tdnn_flatstart.sh).
#   local/chain/run_tdnn.sh [--config conf/mini.yaml]     (from the recipe directory; needs stages 3-5)
# Config: chain.* (net, epochs, learning rates, minibatches, dropout), decode.* (word LM, beams, LM weights), device.
#
#   egs     whole utterances with their numerators, written once by nj jobs      -> exp/chain/egs_e2e
#   pass 1  flat-start LF-MMI on them                                              -> exp/chain/tdnn_e2e
#   align   Viterbi through each utterance's numerator graph with the pass-1 model -> exp/chain/ali_e2e
#   egs     the chunks of pass 2 with their numerators, written once by nj jobs   -> exp/chain/egs
#   pass 2  tdnn_1g proper: 150/111/102-frame chunks, frame shifts 0/1/2, one i-vector per chunk, numerators
#           from the alignment; starts from the pass-1 model (same pdfs; Kaldi builds a tree and starts afresh)
#   decode  best path through the den graph -> phones; PER on dev/test       -> exp/chain/tdnn/decode_{dev,test}
#   words   word n-gram of the ASR transcripts (or decode.lm_arpa) -> exp/chain/lm; HCLG -> exp/chain/tdnn/graph;
#           lattices over nj jobs, best LM weight / insertion penalty against the stm -> decode_{dev,test}/wer,
#           scoring/best.txt (+ decode_{dev,test}_rescore with decode.rescore_arpa); docs/wer.md
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
# Word decoding, conf/mini.yaml (trigram of the 1012 training sentences over the 4581-word lexicon, HCLG 64,997
# states; beam 9, lattice-beam 5), measured in a worktree on 2 shared cores (load ~7.5, so times are high) with
# that run's model (pass 2 -0.0338/-0.0502; PER dev 37.31 / test 37.94):
#   %WER     dev 28.04 [ 224 / 799, 3 ins, 32 del, 189 sub ] (LMWT 8, WIP 1.0)
#            test 34.66 [ 261 / 753, 13 ins, 34 del, 214 sub ] (LMWT 9, WIP 0.5)
#   without acoustics: the LM's most likely sentence of the reference's length dev 98.37 / test 97.48; the graph
#   with log-likelihoods 0 outputs silence, 100.00 / 100.00
#   time     LM 1 s, graph 30 s, decoding + scoring dev 33 s, test 33 s (2 jobs of ~16 s decoding each)
#   Kaldi's run_tdnn_1g.sh on the real TED-LIUM (real corpus, not comparable): dev 7.9 / 7.3 rescored, test 8.0 / 7.6
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
train_data=$data_dir/tedlium_train_sp_comb   # short segments combined (run.sh stage 3)
ivdir=$exp_dir/nnet3/ivectors_tedlium_train_sp_comb
mkdir -p $exp_dir/chain/log
# Each step is redone unless its stamp (ser.io.stamp, written when it succeeds) records the same command
# line and inputs, upstream stamps included.  A training run killed with the same options resumes from
# its checkpoint; with other options its checkpoint is dropped (--stale) and it starts again.
stamp=(python -m ser.bin.stamp)
train_in=($train_data/feats.scp $train_data/text $train_data/utt2spk $data_dir/tedlium_train_sp/.feats.stamp $ivdir/.stamp
          $exp_dir/chain/den.stamp)

# whole utterances with their numerators, written once by nj jobs (Kaldi's e2e get_egs_e2e.sh)
step=(steps/chain/get_egs.sh --nj "$nj" --cmd "$train_cmd $(job_opts default)" --num-utts-subset "$chain_num_valid_utts"
      --lang $data_dir/lang_chain --net "$chain_net" $train_data $ivdir $exp_dir/chain $exp_dir/chain/egs_e2e)
"${stamp[@]}" run $exp_dir/chain/egs_e2e/.stamp --opt "step=${step[*]}" "${train_in[@]}" $data_dir/lang_chain/phones.txt \
  $data_dir/lang_chain/lexiconp.txt -- "${step[@]}"

# pass 1: flat-start ("end-to-end") LF-MMI on whole utterances (Hadian et al. 2018)
step=(steps/train_chain.sh "${train_opts[@]}" --egs-type e2e --egs-dir $exp_dir/chain/egs_e2e
      --num-epochs "$chain_e2e_num_epochs" --e2e-minibatch-size "$chain_e2e_minibatch_size"
      $train_data $ivdir $exp_dir/chain $exp_dir/chain/tdnn_e2e)
"${stamp[@]}" run $exp_dir/chain/tdnn_e2e/.stamp --opt "step=${step[*]}" "${train_in[@]}" $exp_dir/chain/egs_e2e/.stamp \
  --stale $exp_dir/chain/tdnn_e2e/checkpoint.pt -- $cuda_cmd $(job_opts chain_train) $exp_dir/chain/log/train_e2e.log "${step[@]}"
grep '^train_chain:' $exp_dir/chain/log/train_e2e.log

# phone alignments from the flat-start model give the chunks their numerators
step=(steps/chain/align.sh --device "$device" --egs-dir $exp_dir/chain/egs_e2e
      $train_data $exp_dir/chain $exp_dir/chain/tdnn_e2e/final.pt $exp_dir/chain/ali_e2e)
"${stamp[@]}" run $exp_dir/chain/ali_e2e/.stamp --opt "step=${step[*]}" "${train_in[@]}" $exp_dir/chain/tdnn_e2e/.stamp \
  $exp_dir/chain/egs_e2e/.stamp -- $cuda_cmd $(job_opts chain_train) $exp_dir/chain/log/align.log "${step[@]}"
grep '^chain_align:' $exp_dir/chain/log/align.log

# the chunks of pass 2 with their numerators, written once by nj jobs (Kaldi's get_egs.sh)
step=(steps/chain/get_egs.sh --nj "$nj" --cmd "$train_cmd $(job_opts default)" --num-utts-subset "$chain_num_valid_utts"
      --ali-dir $exp_dir/chain/ali_e2e --model $exp_dir/chain/tdnn_e2e/final.pt $train_data $ivdir $exp_dir/chain $exp_dir/chain/egs)
"${stamp[@]}" run $exp_dir/chain/egs/.stamp --opt "step=${step[*]}" "${train_in[@]}" $exp_dir/chain/ali_e2e/.stamp \
  -- "${step[@]}"

# pass 2: the tdnn_1g recipe proper, from the pass-1 model
step=(steps/train_chain.sh "${train_opts[@]}" --egs-type chunk --egs-dir $exp_dir/chain/egs
      --ali $exp_dir/chain/ali_e2e/ali.pt --input-model $exp_dir/chain/tdnn_e2e/final.pt
      --num-epochs "$chain_num_epochs" --num-chunk-per-minibatch "$chain_num_chunk_per_minibatch"
      $train_data $ivdir $exp_dir/chain $exp_dir/chain/tdnn)
"${stamp[@]}" run $exp_dir/chain/tdnn/.stamp --opt "step=${step[*]}" "${train_in[@]}" $exp_dir/chain/ali_e2e/.stamp \
  $exp_dir/chain/egs/.stamp --stale $exp_dir/chain/tdnn/checkpoint.pt -- $cuda_cmd $(job_opts chain_train) \
  $exp_dir/chain/log/train.log "${step[@]}"
grep '^train_chain:' $exp_dir/chain/log/train.log

for x in dev test; do
  step=(steps/chain/decode_per.sh --device "$device"
        --online-ivector-dir $exp_dir/nnet3/ivectors_tedlium_$x --train-text $data_dir/tedlium_train/text
        $exp_dir/chain/tdnn/final.pt $data_dir/tedlium_$x $exp_dir/chain $data_dir/lang_chain $exp_dir/chain/tdnn/decode_$x)
  "${stamp[@]}" run $exp_dir/chain/tdnn/decode_$x/.stamp --opt "step=${step[*]}" $exp_dir/chain/tdnn/.stamp \
    $data_dir/tedlium_$x/.feats.stamp $data_dir/tedlium_$x/text $exp_dir/nnet3/ivectors_tedlium_$x/.stamp $data_dir/tedlium_train/text \
    $exp_dir/chain/den.stamp $data_dir/lang_chain/phones.txt $data_dir/lang_chain/lexiconp.txt \
    -- $decode_cmd $(job_opts decode) $exp_dir/chain/tdnn/log/decode_$x.log "${step[@]}"
  echo "tedlium_$x: $(cat $exp_dir/chain/tdnn/decode_$x/per.txt)   (no acoustics: $(cat $exp_dir/chain/tdnn/decode_$x/per_lm_only.txt))"
done

# word decoding (Kaldi's local/ted_train_lm.sh, utils/mkgraph.sh --self-loop-scale 1.0, steps/nnet3/decode.sh
# --acwt 1.0, local/score.sh; docs/wer.md): a word n-gram of the ASR training transcripts (or the config's
# ARPA), HCLG, lattices over nj jobs, best LM weight / insertion penalty against the stm
if [ -n "$decode_lm_arpa" ]; then
  arpa=$decode_lm_arpa
  [ -f "$arpa" ] || { echo "$0: decode.lm_arpa: no such file: $arpa" >&2; exit 1; }
else
  arpa=$exp_dir/chain/lm/lm.arpa.gz
  step=(steps/chain/make_word_lm.sh --order "$decode_lm_order" --min-counts "$decode_lm_min_counts"
        $data_dir/tedlium_train/text $data_dir/lang_chain $arpa)
  "${stamp[@]}" run $exp_dir/chain/lm/.stamp --opt "step=${step[*]}" $data_dir/tedlium_train/text $data_dir/lang_chain/.stamp \
    -- $train_cmd $exp_dir/chain/log/make_word_lm.log "${step[@]}"
  grep '^make_word_lm:' $exp_dir/chain/log/make_word_lm.log
fi
graph=$exp_dir/chain/tdnn/graph
step=(utils/mkgraph.sh $data_dir/lang_chain $exp_dir/chain "$arpa" $graph)
"${stamp[@]}" run $graph/.stamp --opt "step=${step[*]}" $data_dir/lang_chain/.stamp $exp_dir/chain/den.stamp "$arpa" \
  -- $train_cmd $exp_dir/chain/log/mkgraph.log "${step[@]}"
grep '^mkgraph:' $exp_dir/chain/log/mkgraph.log
for x in dev test; do
  step=(steps/chain/decode.sh --nj "$nj" --cmd "$decode_cmd" --online-ivector-dir $exp_dir/nnet3/ivectors_tedlium_$x
        --beam "$decode_beam" --lattice-beam "$decode_lattice_beam" --max-active "$decode_max_active"
        --min-lmwt "$decode_min_lmwt" --max-lmwt "$decode_max_lmwt" --word-ins-penalty "$decode_word_ins_penalty"
        --device "$device" --rescore-arpa "$decode_rescore_arpa"
        $exp_dir/chain/tdnn/final.pt $graph $data_dir/tedlium_$x $exp_dir/chain/tdnn/decode_$x)
  "${stamp[@]}" run $exp_dir/chain/tdnn/decode_$x/.wer.stamp --opt "step=${step[*]}" $exp_dir/chain/tdnn/.stamp $graph/.stamp \
    $data_dir/tedlium_$x/.feats.stamp $data_dir/tedlium_$x/stm $exp_dir/nnet3/ivectors_tedlium_$x/.stamp \
    ${decode_rescore_arpa:+"$decode_rescore_arpa"} -- "${step[@]}"
  echo "tedlium_$x: $(cut -d' ' -f1-13 $exp_dir/chain/tdnn/decode_$x/wer) (best: $(basename "$(cut -d' ' -f14 $exp_dir/chain/tdnn/decode_$x/wer)"))   (no acoustics: graph $(cut -d' ' -f2 $exp_dir/chain/tdnn/decode_$x/wer_no_acoustics), LM $(cut -d' ' -f2 $exp_dir/chain/tdnn/decode_$x/wer_lm_only))"
  if [ -n "$decode_rescore_arpa" ]; then
    echo "tedlium_$x rescored: $(cut -d' ' -f1-13 $exp_dir/chain/tdnn/decode_${x}_rescore/wer)"
  fi
done
