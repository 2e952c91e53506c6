#!/usr/bin/env bash
# Usage: utils/split_data.sh <data-dir> <num-to-split>: <data-dir>/split<n>/{1..n}, whole speakers per part
. "$(dirname "$0")/../path.sh"
exec python -m ser.bin.split_data "$@"
