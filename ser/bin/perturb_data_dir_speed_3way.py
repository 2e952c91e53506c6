"""utils/perturb_data_dir_speed_3way.sh [--factors '0.9 1.0 1.1'] <src-dir> <dest-dir>

Speed-perturbed copies of a data dir (Kaldi's utils/data/perturb_data_dir_speed_3way.sh): sox speed
pipes in wav.scp, utterance/speaker ids prefixed sp<factor>-.  <dest-dir> is made in one atomic step
with a stamp of the factors and of every file of <src-dir>; a re-run with the same stamp is a no-op,
other factors or a changed <src-dir> rebuild it.
"""

from __future__ import annotations

import argparse

from ser.cli import run_main, setup_logging
from ser.prep.perturb import speed_perturb_3way_dir


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--factors", default="0.9 1.0 1.1")
    p.add_argument("src")
    p.add_argument("dst")
    a = p.parse_args(argv)
    setup_logging()
    factors = [float(x) for x in a.factors.split()]
    d, made = speed_perturb_3way_dir(a.src, a.dst, factors)
    if made:
        print(f"speed perturbation {factors}: {a.dst} has {len(d.utt2spk)} utterances")
    else:
        print(f"{a.dst} is up to date (speed factors {factors}, same {a.src}); not perturbing again")
    return 0


if __name__ == "__main__":
    run_main(main)
