"""utils/perturb_data_dir_speed_3way.sh [--factors '0.9 1.0 1.1'] <src-dir> <dest-dir>

Speed-perturbed copies of a data dir (Kaldi's utils/data/perturb_data_dir_speed_3way.sh): sox speed
pipes in wav.scp, utterance/speaker ids prefixed sp<factor>-.  A no-op while <dest-dir>/utt2spk is newer
than every file of <src-dir>.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ser.cli import run_main, setup_logging
from ser.io.datadir import DataDir
from ser.prep.perturb import speed_perturb_3way


def _newer(dst: Path, src: Path) -> bool:
    if not (dst / "utt2spk").exists():
        return False
    newest_src = max(f.stat().st_mtime for f in src.iterdir() if f.is_file())
    return (dst / "utt2spk").stat().st_mtime >= newest_src


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--factors", default="0.9 1.0 1.1")
    p.add_argument("src")
    p.add_argument("dst")
    a = p.parse_args(argv)
    setup_logging()
    src, dst = Path(a.src), Path(a.dst)
    if _newer(dst, src):
        print(f"{dst} is up to date; not perturbing again")
        return 0
    factors = [float(x) for x in a.factors.split()]
    d = speed_perturb_3way(DataDir.load(src), factors)
    d.validate()
    d.write(dst, replace=True)
    print(f"speed perturbation {factors}: {dst} has {len(d.utt2spk)} utterances")
    return 0


if __name__ == "__main__":
    run_main(main)
