#!/usr/bin/env bash
# Usage: steps/ctc/make_bottleneck_features.sh [options] <layer-name> <input-data> <output-data> <model.pt> \
#          [<log-dir> [<feat-dir>]]
#  e.g.: steps/ctc/make_bottleneck_features.sh --nj 2 layer_1 data/iemocap_all_mfcc26 \
#          data/iemocap_all_ds_layer_1 exp/ctc/ds_mini/final.pt
# Options:
#   --nj <n>          parallel jobs (default 4), split by speaker
#   --cmd <cmd>       job runner (default: local pool; see cmd.sh)
#   --device <dev>    cpu | cuda (default cpu)
# As Kaldi's steps/nnet3/make_bottleneck_features.sh: <output-data> is a copy of <input-data> whose
# feats.scp holds the output of layer <layer-name> (any of the model's layer names; paper 2: layer_1),
# written as <feat-dir>/raw_bnfeat_<name>.JOB.{ark,scp} (default <output-data>/data).  Re-running is a
# no-op while feats.scp is newer than the model and the input features.
set -euo pipefail
nj=4
cmd="python -m ser.jobs"
device=cpu
help_message=$(sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//')
. "$(dirname "$0")/../../path.sh"
. utils/parse_options.sh
if [ $# -lt 4 ] || [ $# -gt 6 ]; then printf '%s\n' "$help_message" >&2; exit 1; fi
layer=$1; data=$2; out=$3; model=$4
name=$(basename "$out")
logdir=${5:-$out/log}
featdir=${6:-$out/data}
[ -f "$data/feats.scp" ] || { echo "$0: no such file: $data/feats.scp" >&2; exit 1; }
[ -f "$model" ] || { echo "$0: no such file: $model" >&2; exit 1; }
source_desc="$layer of $model"
if [ -f "$out/feats.scp" ] && [ "$out/feats.scp" -nt "$model" ] && [ "$out/feats.scp" -nt "$data/feats.scp" ] \
   && [ "$(cat "$out/feats_source" 2>/dev/null)" = "$source_desc" ]; then
  echo "$0: $out/feats.scp is up to date; not recomputing"
  exit 0
fi
mkdir -p "$logdir" "$featdir"
nspk=$(wc -l < "$data/spk2utt")
[ "$nj" -gt "$nspk" ] && nj=$nspk
utils/split_data.sh "$data" "$nj" > /dev/null
$cmd JOB=1:$nj "$logdir/make_bnf_${name}.JOB.log" \
  python -m ser.bin.compute_bottleneck_feats --layer "$layer" --device "$device" \
    "$model" "$data/split$nj/JOB" "$featdir/raw_bnfeat_${name}.JOB" \
  || { echo "$0: computing $layer features for $data failed; logs in $logdir" >&2; exit 1; }
utils/install_feats.sh "$data" "$featdir/raw_bnfeat_${name}" "$nj" "$source_desc" "$out"
grep -h "^compute_bottleneck_feats:" "$logdir"/make_bnf_${name}.*.log | sed "s:^:$name :" || true
echo "$0: succeeded for $out ($(wc -l < "$out/feats.scp") utterances, $source_desc)"
