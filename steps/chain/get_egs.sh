#!/usr/bin/env bash
# Usage: steps/chain/get_egs.sh [options] <data> <ivector-dir|none> <chain-dir> <ali-dir> <model.pt> <egs-dir>
#  e.g.: steps/chain/get_egs.sh --nj 4 --chunk-width 150,110,100 data/tedlium_train_sp_comb \
#          exp/nnet3/ivectors_tedlium_train_sp_comb exp/chain exp/chain/ali_e2e exp/chain/tdnn_e2e/final.pt \
#          exp/chain/tdnn/egs
# Chain chunk examples written once by nj parallel jobs (Kaldi steps/nnet3/chain/get_egs.sh): the held-out
# lists (valid_uttlist, train_diag_uttlist, train_uttlist), then one job per speaker split of <data>, each
# cutting its training utterances into chunks with their numerator graphs and i-vector frames ->
# <egs-dir>/egs.JOB.pt (ser/train/egs_shards.py); info.json last, when every shard is complete.
# <model.pt> gives the context and frame subsampling of the network the egs are for.
# Options:
#   --nj <n>               parallel jobs (default 4; at most the number of speakers)
#   --cmd <cmd>            job runner (default: local pool; see cmd.sh)
#   --chunk-width <w,..>   Kaldi --frames-per-eg (default 150,110,100)
#   --num-utts-subset <n>  held-out utterances for the valid and train-diagnostic sets (default 300)
#   --srand <n>            seed (default 0): the held-out choice, job J's chunks and i-vector frames
set -euo pipefail
nj=4
cmd="python -m ser.jobs"
chunk_width=150,110,100
num_utts_subset=300
srand=0
help_message=$(sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//')
. "$(dirname "$0")/../../path.sh"
. utils/parse_options.sh
if [ $# -ne 6 ]; then printf '%s\n' "$help_message" >&2; exit 1; fi
data=$1 ivdir=$2 chain=$3 ali=$4 model=$5 dir=$6
for f in "$data/feats.scp" "$ali/ali.pt" "$chain/den.pt" "$model"; do
  [ -f "$f" ] || { echo "$0: no such file: $f" >&2; exit 1; }
done
mkdir -p "$dir/log"
rm -f "$dir/info.json" "$dir"/egs.*.pt   # the mark of complete egs goes first; shards of another --nj too
python -m ser.bin.get_egs lists --num-utts-subset "$num_utts_subset" --srand "$srand" "$data" "$ali" "$dir"
nspk=$(wc -l < "$data/spk2utt")
[ "$nj" -gt "$nspk" ] && nj=$nspk
utils/split_data.sh "$data" "$nj" > /dev/null
$cmd JOB=1:$nj "$dir/log/get_egs.JOB.log" \
  python -m ser.bin.get_egs job --job JOB --model "$model" --chunk-width "$chunk_width" --srand "$srand" \
    "$data/split$nj/JOB" "$ivdir" "$chain" "$ali" "$dir" \
  || { echo "$0: writing egs failed; logs in $dir/log" >&2; exit 1; }
python -m ser.bin.get_egs info --nj "$nj" "$dir"
