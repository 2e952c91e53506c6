"""python -m ser.bin.stamp check|write|clear <stamp-file> [--opt name=value ...] <input-file>...

The stamps of ser.io.stamp for shell steps (steps/make_mfcc.sh, local/nnet3/run_ivector_common.sh):
  check   exit 0 when <stamp-file> records exactly these options and input contents (up to date), else 1
  write   write <stamp-file> (after the step's outputs are complete and validated)
  clear   remove <stamp-file> (before changing the outputs)
"""

from __future__ import annotations

import argparse

from ser.cli import run_main
from ser.io.stamp import Stamp


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("action", choices=["check", "write", "clear"])
    p.add_argument("stamp")
    p.add_argument("--opt", action="append", default=[], metavar="NAME=VALUE", help="an option the output depends on")
    p.add_argument("inputs", nargs="*", help="files whose contents the output depends on (a missing one counts too)")
    a = p.parse_intermixed_args(argv)  # options may follow the stamp file
    opts = {}
    for o in a.opt:
        name, eq, value = o.partition("=")
        if not eq or not name:
            p.error(f"--opt expects NAME=VALUE, got {o!r}")
        opts[name] = value
    st = Stamp(a.stamp, opts, a.inputs)
    if a.action == "check":
        return 0 if st.current() else 1
    if a.action == "write":
        st.write()
    else:
        st.clear()
    return 0


if __name__ == "__main__":
    run_main(main)
