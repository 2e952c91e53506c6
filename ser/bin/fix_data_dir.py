"""utils/fix_data_dir.sh <data-dir>: keep the utterances present in every file (as Kaldi's script)."""

from __future__ import annotations

import argparse

from ser.cli import run_main, setup_logging
from ser.io.datadir import DataDir


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("dir")
    a = p.parse_args(argv)
    setup_logging()
    d = DataDir.load(a.dir, validate=False)
    n0 = len(d.utt2spk)
    d.fix().write(a.dir)
    print(f"fix_data_dir: {a.dir}: kept {len(DataDir.load(a.dir).utts)} of {n0} utterances")
    return 0


if __name__ == "__main__":
    run_main(main)
