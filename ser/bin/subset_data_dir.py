"""utils/subset_data_dir.sh --utt-list <file> <src-dir> <dest-dir>: the listed utterances of a data dir."""

from __future__ import annotations

import argparse
from pathlib import Path

from ser.cli import run_main, setup_logging
from ser.io.datadir import DataDir


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--utt-list", required=True, help="file whose first column lists the utterances to keep")
    p.add_argument("src")
    p.add_argument("dst")
    a = p.parse_args(argv)
    setup_logging()
    utts = [line.split()[0] for line in Path(a.utt_list).read_text().splitlines() if line.strip()]
    DataDir.load(a.src).subset(utts).write(a.dst, replace=True)
    return 0


if __name__ == "__main__":
    run_main(main)
