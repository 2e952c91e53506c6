"""Paper 1's Tables 2 and 3 (exp/ser/table2.md, table3.md) from the scored systems.

    python -m ser.bin.make_ser_tables [--table2-fold Ses05] [exp/ser]

See ser.emotion.tables; systems that were not run are listed as such.  ``--table2-fold`` is
the layer-selection test fold (paper 1: session 5).
"""

from __future__ import annotations

import argparse

from ser.cli import run_main
from ser.emotion.tables import write_tables


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--table2-fold", default="Ses05")
    p.add_argument("ser_dir", nargs="?", default="exp/ser")
    a = p.parse_args(argv)
    for path in write_tables(a.ser_dir, a.table2_fold):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    run_main(main)
