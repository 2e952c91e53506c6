#!/usr/bin/env bash
# Usage: steps/ser/make_results_report.sh [<exp-dir>]   (default exp)
# Regenerates <exp-dir>/results.md from every <exp-dir>/ser/<system>/results.json (steps/ser/score.sh does it
# after each system).  See ser/bin/make_results_report.py, ser/eval/report.py.
. "$(dirname "$0")/../../path.sh"
exec python -m ser.bin.make_results_report "$@"
