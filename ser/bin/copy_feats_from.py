"""utils/copy_feats_from.sh <src-dir> <dest-dir>: give <dest-dir> the feats.scp lines of its utterances in <src-dir>.

The emotion sets are views of data/iemocap_all: they share its features (and utt2num_frames, utt2dur)
instead of computing them again.  Utterances without features in <src-dir> are dropped and counted.
"""

from __future__ import annotations

import argparse
import sys

from ser.cli import run_main, setup_logging
from ser.io.datadir import DataDir


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("src")
    p.add_argument("dst")
    a = p.parse_args(argv)
    setup_logging()
    src = DataDir.load(a.src)
    dst = DataDir.load(a.dst)
    missing = [u for u in dst.utts if u not in src.feats]
    if missing:
        print(f"copy_feats_from: {len(missing)} utterances of {a.dst} have no features in {a.src} "
              f"(e.g. {missing[0]}); dropping them", file=sys.stderr)
    keep = [u for u in dst.utts if u in src.feats]
    dst = dst.subset(keep)
    dst.feats = {u: src.feats[u] for u in keep}
    for extra in ("utt2num_frames", "utt2dur"):
        if src.has(extra):
            dst.extras[extra] = {u: src.extra(extra)[u] for u in keep if u in src.extra(extra)}
    dst.write(a.dst)
    return 0


if __name__ == "__main__":
    run_main(main)
