#!/usr/bin/env bash
# Usage: local/prepare_iemocap.sh [--sessions "1 2 3 4 5"] <IEMOCAP_full_release> <data-root>
# data/iemocap_{all,4cls_exc,4cls_hapexc,agree,impro_agree}.  See ser/bin/prepare_iemocap.py.
. "$(dirname "$0")/../path.sh"
exec python -m ser.bin.prepare_iemocap "$@"
