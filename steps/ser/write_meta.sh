#!/usr/bin/env bash
# Usage: steps/ser/write_meta.sh --set S --protocol P --folds "F1 F2 ..." [--description TEXT] <system-dir>
# Writes <system-dir>/labels.txt and meta.json (validation figures per fold) from the folds' options.json,
# valid.json and test.json (ser/bin/write_ser_meta.py); steps/ser/score.sh then scores the system.
. "$(dirname "$0")/../../path.sh"
exec python -m ser.bin.write_ser_meta "$@"
