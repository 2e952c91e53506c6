#!/usr/bin/env bash
# Usage: utils/subset_data_dir.sh --utt-list <file> <src-dir> <dest-dir>
. "$(dirname "$0")/../path.sh"
exec python -m ser.bin.subset_data_dir "$@"
