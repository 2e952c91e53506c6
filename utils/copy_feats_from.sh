#!/usr/bin/env bash
# Usage: utils/copy_feats_from.sh <src-dir> <dest-dir>: give dest the feats.scp lines of its utterances in src
. "$(dirname "$0")/../path.sh"
exec python -m ser.bin.copy_feats_from "$@"
