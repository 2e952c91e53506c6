#!/usr/bin/env bash
# Usage: utils/perturb_data_dir_volume.sh <data-dir>: random volume factor per recording (seed 0)
. "$(dirname "$0")/../path.sh"
exec python -m ser.bin.perturb_data_dir_volume "$@"
