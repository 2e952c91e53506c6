"""Paper 2's Table 1, Table 2 and Fig. 3 from the scored systems (steps/ser/make_paper2_tables.sh).

    python -m ser.bin.make_paper2_tables <set-data-dir> [<exp-dir>]

writes <exp-dir>/ser/paper2_table1.md, paper2_table2.md, paper2_fig3.{png,tsv}; see
ser/emotion/paper2_tables.py.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ser.cli import run_main
from ser.emotion.paper2_tables import write_tables


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("set_dir", help="data/<set> with utt2emo (paper 2: data/iemocap_agree)")
    p.add_argument("exp_dir", nargs="?", default="exp")
    a = p.parse_args(argv)
    for path in write_tables(Path(a.set_dir), Path(a.exp_dir)):
        print(f"make_paper2_tables: wrote {path}")
    return 0


if __name__ == "__main__":
    run_main(main)
