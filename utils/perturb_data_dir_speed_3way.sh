#!/usr/bin/env bash
# Usage: utils/perturb_data_dir_speed_3way.sh [--factors '0.9 1.0 1.1'] <src-dir> <dest-dir>
. "$(dirname "$0")/../path.sh"
exec python -m ser.bin.perturb_data_dir_speed_3way "$@"
