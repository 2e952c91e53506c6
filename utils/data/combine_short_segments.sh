#!/usr/bin/env bash
# Usage: utils/data/combine_short_segments.sh <src-dir> <min-segment-length-in-seconds> <dir>
. "$(dirname "$0")/../../path.sh"
exec python -m ser.bin.combine_short_segments "$@"
