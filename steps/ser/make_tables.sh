#!/usr/bin/env bash
# Usage: steps/ser/make_tables.sh [--table2-fold Ses05] [--set-dir data/<set> --labels "ang hap neu sad"] [<ser-dir>]
# Paper 1's Table 2 (layer selection) and Table 3 (per-session UA, transfer vs scratch) from the scored
# systems: <ser-dir>/table2.md, table3.md; with --set-dir, Table 1 (per-session class counts of the prepared
# set): <ser-dir>/table1.md.  See ser/bin/make_ser_tables.py, ser/emotion/tables.py.
. "$(dirname "$0")/../../path.sh"
exec python -m ser.bin.make_ser_tables "$@"
