"""utils/validate_data_dir.sh [--no-text] [--no-feats] <data-dir>: check a data dir as Kaldi's script does."""

from __future__ import annotations

import argparse

from ser.cli import run_main, setup_logging
from ser.io.datadir import DataDir


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--no-text", action="store_true", help="text is not required")
    p.add_argument("--no-feats", action="store_true", help="feats.scp is not required")
    p.add_argument("dir")
    a = p.parse_args(argv)
    setup_logging()
    DataDir.load(a.dir, validate=False).validate(need_text=not a.no_text, need_feats=not a.no_feats)
    print(f"Successfully validated data-directory {a.dir}")
    return 0


if __name__ == "__main__":
    run_main(main)
