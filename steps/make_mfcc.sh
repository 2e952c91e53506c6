#!/usr/bin/env bash
# Usage: steps/make_mfcc.sh [options] <data-dir> [<log-dir> [<mfcc-dir>]]
#  e.g.: steps/make_mfcc.sh --nj 4 --mfcc-config conf/mfcc_hires.conf data/tedlium_dev exp/make_mfcc/tedlium_dev mfcc
# Options:
#   --nj <n>                  number of parallel jobs (default 4), split by speaker
#   --cmd <cmd>               job runner (default: local pool; see cmd.sh)
#   --mfcc-config <file>      Kaldi MFCC options (default conf/mfcc.conf)
#   --device <cpu|cuda>       where to compute (default cpu)
#   --compress <true|false>   store the arks in Kaldi's compressed format (default true, as Kaldi's copy-feats step)
# Writes <mfcc-dir>/raw_mfcc_<name>.JOB.{ark,scp}, <data-dir>/feats.scp and utt2num_frames.
# As Kaldi's steps/make_mfcc.sh; utterances the jobs had to skip are removed with fix_data_dir
# (counted in the logs).  Done = features for every utterance, validated, and <data-dir>/.feats.stamp
# written last (ser.io.stamp: MFCC options, --compress, wav.scp, segments, utt2spk, the dir's own stamp); a re-run
# with the same stamp is a no-op, anything else (a kill, other options or audio lists) recomputes.
set -euo pipefail
nj=4
cmd="python -m ser.jobs"
mfcc_config=conf/mfcc.conf
device=cpu
compress=true
write_utt2num_frames=true
help_message=$(sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//')
. "$(dirname "$0")/../path.sh"
. utils/parse_options.sh
if [ $# -lt 1 ] || [ $# -gt 3 ]; then printf '%s\n' "$help_message" >&2; exit 1; fi
data=$1
name=$(basename "$data")
logdir=${2:-$data/log}
mfccdir=${3:-$data/data}
[ -f "$data/utt2spk" ] || { echo "$0: no such data dir: $data" >&2; exit 1; }
[ -f "$mfcc_config" ] || { echo "$0: no such file: $mfcc_config" >&2; exit 1; }

stamp=(python -m ser.bin.stamp)
stamp_args=("$data/.feats.stamp" --opt "compress=$compress" "$mfcc_config" "$data/wav.scp" "$data/segments" "$data/utt2spk" "$data/.stamp")
if "${stamp[@]}" check "${stamp_args[@]}" && utils/validate_data_dir.sh --no-text "$data" > /dev/null 2>&1; then
  echo "$0: $data/feats.scp is up to date; not recomputing"
  exit 0
fi
"${stamp[@]}" clear "${stamp_args[@]}"
rm -f "$data/feats.scp" "$data/utt2num_frames"   # an interrupted run's, possibly not fixed yet
mkdir -p "$logdir" "$mfccdir"
rm -f "$mfccdir/raw_mfcc_${name}".*.tmp           # left by a killed run with another --nj
utils/validate_data_dir.sh --no-text --no-feats "$data" > /dev/null
nspk=$(wc -l < "$data/spk2utt")
[ "$nj" -gt "$nspk" ] && nj=$nspk
utils/split_data.sh "$data" "$nj" > /dev/null

$cmd JOB=1:$nj "$logdir/make_mfcc_${name}.JOB.log" \
  python -m ser.bin.compute_mfcc_feats --mfcc-config "$mfcc_config" --device "$device" \
    --compress "$compress" "$data/split$nj/JOB" "$mfccdir/raw_mfcc_${name}.JOB" \
  || { echo "$0: computing MFCC for $data failed; logs in $logdir" >&2; exit 1; }

for n in $(seq "$nj"); do cat "$mfccdir/raw_mfcc_${name}.$n.scp"; done | sort > "$data/feats.scp.tmp"
if [ "$write_utt2num_frames" = true ]; then
  for n in $(seq "$nj"); do cat "$mfccdir/raw_mfcc_${name}.$n.utt2num_frames"; done | sort > "$data/utt2num_frames.tmp"
  mv "$data/utt2num_frames.tmp" "$data/utt2num_frames"
fi
rm -f "$data/feats.scp"  # the fix below needs the complete new list
nf=$(wc -l < "$data/feats.scp.tmp"); nu=$(wc -l < "$data/utt2spk")
if [ "$nf" -ne "$nu" ]; then
  echo "$0: $((nu - nf)) of $nu utterances got no features (see $logdir/make_mfcc_${name}.*.log); fixing $data"
  mv "$data/feats.scp.tmp" "$data/feats.scp"
  ser_kill_point make_mfcc:before_fix
  utils/fix_data_dir.sh "$data"
else
  mv "$data/feats.scp.tmp" "$data/feats.scp"
fi
utils/validate_data_dir.sh --no-text "$data" > /dev/null
"${stamp[@]}" write "${stamp_args[@]}"
grep -h "^compute_mfcc_feats:" "$logdir"/make_mfcc_${name}.*.log | head -n "$nj" | n="$name" awk '{print ENVIRON["n"] " " $0}' || true
echo "$0: succeeded for $data ($nf utterances)"
