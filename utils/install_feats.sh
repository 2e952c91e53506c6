#!/usr/bin/env bash
# Usage: utils/install_feats.sh <src-data> <feats-prefix> <nj> <feats-source> <dest-data>
# Makes <dest-data> a copy of <src-data> whose feats.scp (and utt2num_frames, when the jobs wrote them) are
# the concatenation of <feats-prefix>.{1..nj}.scp, with <feats-source> (what made them, e.g. "layer_1 of
# exp/ctc/ds_mini/final.pt") in <dest-data>/feats_source for up-to-date checks.  Utterances the jobs
# skipped are removed (fix_data_dir).  Built in <dest-data>.tmp; feats.scp is moved in last.
set -euo pipefail
. "$(dirname "$0")/../path.sh"
[ $# -eq 5 ] || { sed -n '2,6p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 1; }
src=$1; prefix=$2; nj=$3; source_desc=$4; out=$5
rm -rf "$out.tmp"
utils/copy_data_dir.sh "$src" "$out.tmp"
for n in $(seq "$nj"); do cat "$prefix.$n.scp"; done | sort > "$out.tmp/feats.scp.new"
if [ -f "$prefix.1.utt2num_frames" ]; then
  for n in $(seq "$nj"); do cat "$prefix.$n.utt2num_frames"; done | sort > "$out.tmp/utt2num_frames"
fi
mv "$out.tmp/feats.scp.new" "$out.tmp/feats.scp"
nf=$(wc -l < "$out.tmp/feats.scp"); nu=$(wc -l < "$out.tmp/utt2spk")
if [ "$nf" -ne "$nu" ]; then
  echo "$0: $((nu - nf)) of $nu utterances got no features; fixing $out"
  utils/fix_data_dir.sh "$out.tmp"
fi
echo "$source_desc" > "$out.tmp/feats_source"
utils/validate_data_dir.sh --no-text "$out.tmp" > /dev/null
mkdir -p "$out"
rm -f "$out/feats.scp"
for f in "$out.tmp"/*; do [ -f "$f" ] && [ "$(basename "$f")" != feats.scp ] && mv "$f" "$out/"; done
mv "$out.tmp/feats.scp" "$out/feats.scp"  # last: its presence means the dir is complete
rm -rf "$out.tmp"
