#!/usr/bin/env bash
# Usage: utils/make_feats.sh [--nj <n>] [--cmd <cmd>] <kind> <feats-source> <input-data> <output-data> \
#          <log-dir> <feat-dir> "<stamp-input-files>" -- <program command> [<options>...]
# The body shared by steps/make_opensmile.sh and steps/ctc/make_bottleneck_features.sh: runs
#   <program> <program-options> <input-data>/split<nj>/JOB <feat-dir>/raw_<kind>_<name>.JOB
# as <nj> jobs (split by speaker) and makes <output-data> a copy of <input-data> whose feats.scp holds their
# output (utils/install_feats.sh).  Done = <output-data>/.feats.stamp (ser.io.stamp), written last: the
# feature source text (program, options, model) and the contents of <stamp-input-files> (space-separated:
# the input lists, the input data dir's stamps, a model).  A re-run with the same stamp is a no-op;
# anything else (a kill, another model or option, other input lists) computes the features again.
set -euo pipefail
nj=4
cmd="python -m ser.jobs"
help_message=$(sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//')
. "$(dirname "$0")/../path.sh"
. utils/parse_options.sh
if [ $# -lt 9 ] || [ "$8" != "--" ]; then printf '%s\n' "$help_message" >&2; exit 1; fi
kind=$1; source_desc=$2; data=$3; out=$4; logdir=$5; featdir=$6; read -r -a inputs <<< "$7"; shift 8
name=$(basename "$out")
stamp=(python -m ser.bin.stamp)
stamp_args=("$out/.feats.stamp" --opt "source=$source_desc" "${inputs[@]}")
if "${stamp[@]}" check "${stamp_args[@]}" && [ -f "$out/feats.scp" ]; then
  echo "$0: $out/feats.scp is up to date; not recomputing"
  exit 0
fi
"${stamp[@]}" clear "${stamp_args[@]}"
mkdir -p "$logdir" "$featdir"
nspk=$(wc -l < "$data/spk2utt")
[ "$nj" -gt "$nspk" ] && nj=$nspk
utils/split_data.sh "$data" "$nj" > /dev/null
prog=$(printf '%s\n' "$@" | sed -n 's/^ser\.bin\.//p' | head -n 1)  # its summary lines start with this
$cmd JOB=1:$nj "$logdir/make_${kind}_${name}.JOB.log" \
  "$@" "$data/split$nj/JOB" "$featdir/raw_${kind}_${name}.JOB" \
  || { echo "$0: computing $source_desc for $data failed; logs in $logdir" >&2; exit 1; }
utils/install_feats.sh "$data" "$featdir/raw_${kind}_${name}" "$nj" "$source_desc" "$out"
ser_kill_point make_feats:before_stamp
"${stamp[@]}" write "${stamp_args[@]}"
grep -h "^$prog:" "$logdir"/make_${kind}_${name}.*.log | n="$name" awk '{print ENVIRON["n"] " " $0}' || true
echo "$0: succeeded for $out ($(wc -l < "$out/feats.scp") utterances, $source_desc)"
