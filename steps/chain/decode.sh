#!/usr/bin/env bash
# Usage: steps/chain/decode.sh [options] <model.pt> <graph-dir> <data-dir> <decode-dir>
# Word decoding with a chain model (Kaldi's steps/nnet3/decode.sh --acwt 1.0 + local/score.sh):
# lattices on <graph-dir>/HCLG.fst over --nj jobs sharing the utterances by frames (<decode-dir>/lat.JOB.pt, logs in
# <decode-dir>/log), then scoring against <data-dir>/stm over LM weights and insertion penalties:
# <decode-dir>/wer (best_wer.sh's line), wer_LMWT_WIP, scoring/best.txt, wer_no_acoustics.
# Options:
#   --nj <n>                     parallel jobs (default 4)
#   --cmd <cmd>                  job runner (default: local pool; see cmd.sh)
#   --online-ivector-dir <dir>   online i-vectors of <data-dir>
#   --beam 15.0 --lattice-beam 8.0 --max-active 7000   (Kaldi's defaults; max-active: see the docs)
#   --post-decode-acwt 10.0      acoustic scale of the lattices (Kaldi's chain decoding)
#   --min-lmwt 7 --max-lmwt 17 --word-ins-penalty 0.0,0.5,1.0   (score_kaldi.sh's)
#   --device <cpu|cuda|auto>     where the network runs (default cpu)
#   --rescore-arpa <arpa>        also rescore the lattices with this LM -> <decode-dir>_rescore (lmrescore.sh)
set -euo pipefail
nj=4
cmd="python -m ser.jobs"
online_ivector_dir=
beam=15.0
lattice_beam=8.0
max_active=7000
post_decode_acwt=10.0
min_lmwt=7
max_lmwt=17
word_ins_penalty=0.0,0.5,1.0
device=cpu
rescore_arpa=
help_message=$(sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//')
. "$(dirname "$0")/../../path.sh"
. utils/parse_options.sh
if [ $# -ne 4 ]; then printf '%s\n' "$help_message" >&2; exit 1; fi
model=$1; graph=$2; data=$3; dir=$4
for f in "$model" "$graph/HCLG.fst" "$graph/words.txt" "$data/feats.scp" "$data/stm"; do
  [ -f "$f" ] || { echo "$0: no such file: $f" >&2; exit 1; }
done
nutt=$(wc -l < "$data/feats.scp")
[ "$nj" -gt "$nutt" ] && nj=$nutt
mkdir -p "$dir/log"
rm -f "$dir"/lat.*.pt "$dir"/wer "$dir"/wer_*   # another --nj's lattices must not be scored
ivec=(); [ -n "$online_ivector_dir" ] && ivec=(--online-ivector-dir "$online_ivector_dir")
$cmd JOB=1:$nj "$dir/log/decode.JOB.log" \
  python -m ser.bin.decode_wer "${ivec[@]}" --beam "$beam" --lattice-beam "$lattice_beam" \
    --max-active "$max_active" --post-decode-acwt "$post_decode_acwt" --device "$device" --job JOB --num-jobs "$nj" "$model" "$graph" "$data" "$dir/lat.JOB.pt" \
  || { echo "$0: decoding $data failed; logs in $dir/log" >&2; exit 1; }
$cmd "$dir/log/score.log" python -m ser.bin.score_wer --min-lmwt "$min_lmwt" --max-lmwt "$max_lmwt" \
  --word-ins-penalty "$word_ins_penalty" "$data" "$graph" "$dir" \
  || { echo "$0: scoring $dir failed; log in $dir/log/score.log" >&2; exit 1; }
if [ -n "$rescore_arpa" ]; then
  mkdir -p "${dir}_rescore/log"
  $cmd "${dir}_rescore/log/score.log" python -m ser.bin.score_wer --min-lmwt "$min_lmwt" --max-lmwt "$max_lmwt" \
    --word-ins-penalty "$word_ins_penalty" --rescore-arpa "$rescore_arpa" --out-dir "${dir}_rescore" \
    "$data" "$graph" "$dir" \
    || { echo "$0: rescoring $dir failed; log in ${dir}_rescore/log/score.log" >&2; exit 1; }
fi
