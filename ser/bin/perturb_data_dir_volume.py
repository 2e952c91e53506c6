"""utils/perturb_data_dir_volume.sh <data-dir>: a random volume factor per recording (seed 0), in place.

Kaldi's utils/data/perturb_data_dir_volume.sh: sox --vol pipes in wav.scp, factors in reco2vol; a dir
that already has reco2vol is left alone.
"""

from __future__ import annotations

import argparse

from ser.cli import run_main, setup_logging
from ser.io.datadir import DataDir
from ser.prep.perturb import volume_perturb_dir


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("dir")
    a = p.parse_args(argv)
    setup_logging()
    d = DataDir.load(a.dir)
    if d.has("reco2vol"):
        print(f"{a.dir} already volume-perturbed (reco2vol exists)")
        return 0
    volume_perturb_dir(d).write(a.dir)
    print(f"volume perturbation: {a.dir}, {len(d.wav)} recordings")
    return 0


if __name__ == "__main__":
    run_main(main)
