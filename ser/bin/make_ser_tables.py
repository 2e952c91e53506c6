"""Paper 1's Tables 2 and 3 (exp/ser/table2.md, table3.md) from the scored systems.

    python -m ser.bin.make_ser_tables [exp/ser]

See ser.emotion.tables; systems that were not run are listed as such.
"""

from __future__ import annotations

import sys

from ser.emotion.tables import write_tables


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) > 1:
        print("usage: python -m ser.bin.make_ser_tables [exp/ser]", file=sys.stderr)
        return 1
    try:
        for p in write_tables(argv[0] if argv else "exp/ser"):
            print(f"wrote {p}")
    except OSError as e:
        print(f"make_ser_tables: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
