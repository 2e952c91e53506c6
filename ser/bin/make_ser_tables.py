"""Paper 1's Tables 2 and 3 (exp/ser/table2.md, table3.md) from the scored systems, and Table 1
(exp/ser/table1.md) from the prepared set.

    python -m ser.bin.make_ser_tables [--table2-fold Ses05] [--set-dir data/iemocap_4cls_exc] [exp/ser]

See ser.emotion.tables; systems that were not run are listed as such.  ``--table2-fold`` is
the layer-selection test fold (paper 1: session 5); ``--set-dir`` the set whose per-session class
counts make Table 1 (none: no Table 1), in the class order of ``--labels``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ser.cli import run_main
from ser.emotion.tables import write_table1, write_tables


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--table2-fold", default="Ses05")
    p.add_argument("--set-dir", default="", help="the prepared set of Table 1 (default: no Table 1)")
    p.add_argument("--labels", default="ang hap neu sad", help="class order of Table 1's columns")
    p.add_argument("ser_dir", nargs="?", default="exp/ser")
    a = p.parse_args(argv)
    if a.set_dir:
        print(f"wrote {write_table1(a.set_dir, a.labels.split(), Path(a.ser_dir) / 'table1.md')}")
    for path in write_tables(a.ser_dir, a.table2_fold):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    run_main(main)
