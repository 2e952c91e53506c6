#!/usr/bin/env bash
# Usage: utils/validate_data_dir.sh [--no-text] [--no-feats] <data-dir>  (as Kaldi's)
. "$(dirname "$0")/../path.sh"
exec python -m ser.bin.validate_data_dir "$@"
