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
# no-op while the stamp records the same layer, model contents and input features (utils/make_feats.sh).
set -euo pipefail
nj=4
cmd="python -m ser.jobs"
device=cpu
help_message=$(sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//')
. "$(dirname "$0")/../../path.sh"
. utils/parse_options.sh
if [ $# -lt 4 ] || [ $# -gt 6 ]; then printf '%s\n' "$help_message" >&2; exit 1; fi
layer=$1; data=$2; out=$3; model=$4
logdir=${5:-$out/log}
featdir=${6:-$out/data}
[ -f "$data/feats.scp" ] || { echo "$0: no such file: $data/feats.scp" >&2; exit 1; }
[ -f "$model" ] || { echo "$0: no such file: $model" >&2; exit 1; }
exec utils/make_feats.sh --nj "$nj" --cmd "$cmd" bnfeat "$layer of $model" "$data" "$out" "$logdir" "$featdir" \
  "$data/feats.scp $data/utt2spk $data/.feats.stamp $model" \
  -- python -m ser.bin.compute_bottleneck_feats --layer "$layer" --device "$device" "$model"
