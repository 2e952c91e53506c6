#!/usr/bin/env bash
# Usage: steps/make_opensmile.sh [options] <input-data> <output-data> [<log-dir> [<feat-dir>]]
#  e.g.: steps/make_opensmile.sh --nj 2 --feature-set eGeMAPSv02 data/iemocap_all data/iemocap_all_egemaps
# Options:
#   --nj <n>                  parallel jobs (default 4), split by speaker
#   --cmd <cmd>               job runner (default: local pool; see cmd.sh)
#   --feature-set <name>      eGeMAPSv02 (default, 88) | IS09_emotion (384) | ComParE_2016 | emobase | ...
# openSMILE functionals (one row per utterance) of the audio of <input-data> (wav.scp, segments), through
# the opensmile package; <output-data> is a copy of <input-data> whose feats.scp holds them, written as
# <feat-dir>/raw_opensmile_<name>.JOB.{ark,scp} (default <output-data>/data).  Re-running is a no-op while
# the stamp records the same feature set and audio lists (utils/make_feats.sh).  See ser/features/opensmile.py.
set -euo pipefail
nj=4
cmd="python -m ser.jobs"
feature_set=eGeMAPSv02
help_message=$(sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//')
. "$(dirname "$0")/../path.sh"
. utils/parse_options.sh
if [ $# -lt 2 ] || [ $# -gt 4 ]; then printf '%s\n' "$help_message" >&2; exit 1; fi
data=$1; out=$2
logdir=${3:-$out/log}
featdir=${4:-$out/data}
[ -f "$data/wav.scp" ] || { echo "$0: no such file: $data/wav.scp" >&2; exit 1; }
exec utils/make_feats.sh --nj "$nj" --cmd "$cmd" opensmile "openSMILE $feature_set functionals" "$data" "$out" \
  "$logdir" "$featdir" "$data/wav.scp $data/segments $data/utt2spk $data/.stamp" \
  -- python -m ser.bin.compute_opensmile_feats --feature-set "$feature_set"
