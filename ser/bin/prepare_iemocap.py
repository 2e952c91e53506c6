"""local/prepare_iemocap.sh <IEMOCAP_full_release dir> <data root>

Writes <data root>/iemocap_all, iemocap_4cls_exc, iemocap_4cls_hapexc, iemocap_impro_agree.
See ser/prep/iemocap.py for the label sets and the speaker / utterance-id conventions.
"""

from __future__ import annotations

import argparse

from ser.cli import run_main, setup_logging
from ser.prep.iemocap import prepare_iemocap


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("corpus")
    p.add_argument("data_root")
    a = p.parse_args(argv)
    setup_logging()
    stats = prepare_iemocap(a.corpus, a.data_root)
    for name, c in stats.items():
        labels = {k: v for k, v in sorted(c.items()) if len(k) == 3}
        print(f"{name}: {sum(labels.values())} utterances {labels}")
    return 0


if __name__ == "__main__":
    run_main(main)
