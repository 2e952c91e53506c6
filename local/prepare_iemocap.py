#!/usr/bin/env python3
"""Usage: local/prepare_iemocap.py <IEMOCAP_full_release dir> <data root>

Writes <data root>/iemocap_all, iemocap_4cls_exc, iemocap_4cls_hapexc, iemocap_impro_agree.
See ser/prep/iemocap.py for the label sets and the speaker / utterance-id conventions.
"""
import argparse
import logging
import sys

from ser.io.datadir import DataDirError
from ser.prep.iemocap import prepare_iemocap


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("corpus")
    p.add_argument("data_root")
    a = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        stats = prepare_iemocap(a.corpus, a.data_root)
    except DataDirError as e:
        print(f"local/prepare_iemocap.py: error: {e}", file=sys.stderr)
        return 1
    for name, c in stats.items():
        labels = {k: v for k, v in sorted(c.items()) if len(k) == 3}
        print(f"{name}: {sum(labels.values())} utterances {labels}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
