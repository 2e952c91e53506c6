"""utils/split_data.sh <data-dir> <num-to-split>: <data-dir>/split<n>/{1..n}, whole speakers per part."""

from __future__ import annotations

import argparse

from ser.cli import run_main, setup_logging
from ser.io.datadir import DataDir


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("dir")
    p.add_argument("n", type=int)
    a = p.parse_args(argv)
    setup_logging()
    for part in DataDir.load(a.dir).split(a.n):
        print(part)
    return 0


if __name__ == "__main__":
    run_main(main)
