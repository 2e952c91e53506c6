#!/usr/bin/env python3
"""Usage: local/prepare_iemocap.py [--sessions "1 2 3 4 5"] <IEMOCAP_full_release dir> <data root>

Writes <data root>/iemocap_all, iemocap_4cls_exc, iemocap_4cls_hapexc, iemocap_impro_agree.
Every session named by --sessions (default all five) must be there and have turns with audio.
See ser/prep/iemocap.py for the label sets and the speaker / utterance-id conventions.
"""
import argparse
import logging
import sys

from ser.io.datadir import DataDirError
from ser.prep.iemocap import prepare_iemocap


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sessions", default="", help="sessions to use, e.g. '1 2 3' or 1,2,3 (default: all five)")
    p.add_argument("corpus")
    p.add_argument("data_root")
    a = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        sessions = [int(x) for x in a.sessions.replace(",", " ").split()] or None
    except ValueError:
        print(f"local/prepare_iemocap.py: error: --sessions: expected session numbers, got {a.sessions!r}", file=sys.stderr)
        return 1
    try:
        stats = prepare_iemocap(a.corpus, a.data_root, sessions)
    except DataDirError as e:
        print(f"local/prepare_iemocap.py: error: {e}", file=sys.stderr)
        return 1
    for name, c in stats.items():
        labels = {k: v for k, v in sorted(c.items()) if len(k) == 3}
        print(f"{name}: {'up to date: ' if c['up_to_date'] else ''}{sum(labels.values())} utterances {labels}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
