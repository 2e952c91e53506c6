#!/usr/bin/env bash
# Usage: steps/chain/get_egs.sh [options] (--ali-dir <ali-dir> | --lang <lang>) (--model <model.pt> | --net <net>)
#          <data> <ivector-dir|none> <chain-dir> <egs-dir>
#  e.g.: steps/chain/get_egs.sh --nj 4 --ali-dir exp/chain/ali_e2e --model exp/chain/tdnn_e2e/final.pt \
#          data/tedlium_train_sp_comb exp/nnet3/ivectors_tedlium_train_sp_comb exp/chain exp/chain/egs
# Chain examples written once by nj parallel jobs (Kaldi steps/nnet3/chain/get_egs.sh, e2e/get_egs_e2e.sh):
# the held-out lists (valid_uttlist, train_diag_uttlist, train_uttlist), then one job per speaker split of
# <data> making the examples of its training utterances -> <egs-dir>/egs.JOB.pt (ser/train/egs_shards.py), and
# those of the held-out sets -> valid.pt, train_diag.pt:
#   --ali-dir D   chunks with numerators from the alignment D/ali.pt (pass 2)
#   --lang L      whole utterances with numerators compiled from their transcripts through L (flat start)
# info.json is written last, when every shard is complete.  --model (a model of the network) or --net (its
# preset) gives the context and frame subsampling the egs are made for (Kaldi passes --left-context).
# Options:
#   --nj <n>               parallel jobs (default 4; at most the number of speakers)
#   --cmd <cmd>            job runner (default: local pool; see cmd.sh)
#   --chunk-width <w,..>   Kaldi --frames-per-eg (default 150,110,100; chunk egs)
#   --num-utts-subset <n>  held-out utterances for the valid and train-diagnostic sets (default 300)
#   --srand <n>            seed (default 0): the held-out choice, job J's chunks and i-vector frames
set -euo pipefail
nj=4
cmd="python -m ser.jobs"
ali_dir=
lang=
model=
net=
chunk_width=150,110,100
num_utts_subset=300
srand=0
help_message=$(sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//')
. "$(dirname "$0")/../../path.sh"
. utils/parse_options.sh
if [ $# -ne 4 ]; then printf '%s\n' "$help_message" >&2; exit 1; fi
data=$1 ivdir=$2 chain=$3 dir=$4
if [ -n "$ali_dir" ] && [ -z "$lang" ]; then how=(--ali-dir "$ali_dir"); need=("$ali_dir/ali.pt")
elif [ -n "$lang" ] && [ -z "$ali_dir" ]; then how=(--lang "$lang"); need=("$lang/phones.txt")
else echo "$0: give --ali-dir (chunk egs) or --lang (whole-utterance egs)" >&2; exit 1; fi
if [ -n "$model" ]; then net_opt=(--model "$model"); need+=("$model"); else net_opt=(--net "$net"); fi
for f in "$data/feats.scp" "${need[@]}" "$chain/den.pt"; do
  [ -f "$f" ] || { echo "$0: no such file: $f" >&2; exit 1; }
done
mkdir -p "$dir/log"
rm -f "$dir/info.json" "$dir"/egs.*.pt "$dir"/{valid,train_diag}.pt   # the mark of complete egs first
python -m ser.bin.get_egs lists "${how[@]}" --num-utts-subset "$num_utts_subset" --srand "$srand" "$data" "$dir"
nspk=$(wc -l < "$data/spk2utt")
[ "$nj" -gt "$nspk" ] && nj=$nspk
utils/split_data.sh "$data" "$nj" > /dev/null
$cmd JOB=1:$nj "$dir/log/get_egs.JOB.log" \
  python -m ser.bin.get_egs job --job JOB "${how[@]}" "${net_opt[@]}" --chunk-width "$chunk_width" \
    --srand "$srand" "$data/split$nj/JOB" "$ivdir" "$chain" "$dir" \
  || { echo "$0: writing egs failed; logs in $dir/log" >&2; exit 1; }
$cmd "$dir/log/get_egs.held_out.log" \
  python -m ser.bin.get_egs job --subset held-out "${how[@]}" "${net_opt[@]}" --chunk-width "$chunk_width" \
    --srand "$srand" "$data" "$ivdir" "$chain" "$dir" \
  || { echo "$0: writing the held-out egs failed; see $dir/log/get_egs.held_out.log" >&2; exit 1; }
python -m ser.bin.get_egs info --nj "$nj" "$dir"
