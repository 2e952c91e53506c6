#!/usr/bin/env bash
# Usage: utils/fix_data_dir.sh <data-dir>: keep utterances present in every file (as Kaldi's)
. "$(dirname "$0")/../path.sh"
exec python -m ser.bin.fix_data_dir "$@"
