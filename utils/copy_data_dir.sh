#!/usr/bin/env bash
# Usage: utils/copy_data_dir.sh <src-data> <dest-data>
# Copies the tables of a data dir (as Kaldi's utils/copy_data_dir.sh), WITHOUT feats.scp and utt2num_frames:
# the copy is made to receive other features (steps/make_mfcc.sh treats an existing feats.scp as up to date).
# A no-op when <dest-data>/utt2spk exists.
set -euo pipefail
. "$(dirname "$0")/../path.sh"
[ $# -eq 2 ] || { sed -n '2,5p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 1; }
src=$1; dest=$2
[ -f "$dest/utt2spk" ] && exit 0
rm -rf "$dest.tmp"
mkdir -p "$(dirname "$dest")"
cut -d' ' -f1 "$src/utt2spk" > "$dest.utts.tmp"
utils/subset_data_dir.sh --utt-list "$dest.utts.tmp" "$src" "$dest.tmp" > /dev/null
rm -f "$dest.utts.tmp" "$dest.tmp/feats.scp" "$dest.tmp/utt2num_frames"
mv "$dest.tmp" "$dest"
