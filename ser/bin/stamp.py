"""python -m ser.bin.stamp check|write|clear|run <stamp-file> [--opt name=value ...] [<input-file>...] [-- command...]

The stamps of ser.io.stamp for shell steps (run.sh, steps/make_mfcc.sh, utils/make_feats.sh, the stage
drivers under local/):
  check   exit 0 when <stamp-file> records exactly these options and input contents (up to date), else 1
  write   write <stamp-file> (after the step's outputs are complete and validated)
  clear   remove <stamp-file> (before changing the outputs)
  run     the step as one call: nothing if up to date; else clear, run the command after ``--``, and
          write the stamp if it succeeded (exit status: the command's).  ``--stale F`` (repeatable): files
          of an interrupted run to delete when that run had other options or inputs (a trainer's
          checkpoint.pt), as recorded in <stamp-file>.begun while a run is under way.
A stage stamp (run.sh) adds: ``--code`` (an option: the digest of the recipe's scripts, configuration
files and sources), ``write --steps LOG`` (inputs: the step stamps listed in LOG, $SER_STAMP_LOG of the
stage, and every input they record) and ``check --recorded`` (inputs: those the stamp file records).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from ser.cli import run_main
from ser.io.atomic import atomic_write_text
from ser.io.stamp import Stamp, code_digest, logged_inputs, recorded_inputs


def run(st: Stamp, command: list[str], stale: list[str]) -> int:
    """Run ``command`` unless ``st`` is current; stamp it when it succeeds."""
    if st.current():
        print(f"{st.path.parent}: up to date ({st.path}); not running {Path(command[0]).name} again")
        return 0
    st.clear()
    begun = st.path.with_name(st.path.name + ".begun")
    try:
        same_run = begun.read_text(encoding="utf-8").split("\n", 1)[0] == st.value
    except (FileNotFoundError, UnicodeDecodeError):
        same_run = False
    if not same_run:  # no run under way, or one with other options or inputs: its leftovers go
        for f in stale:
            Path(f).unlink(missing_ok=True)
    atomic_write_text(begun, st.value + "\n")
    rc = subprocess.call(command)
    if rc == 0:
        st.write()
        begun.unlink(missing_ok=True)
    return rc


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    command: list[str] = []
    if "--" in argv:
        i = argv.index("--")
        argv, command = argv[:i], argv[i + 1:]
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("action", choices=["check", "write", "clear", "run"])
    p.add_argument("stamp")
    p.add_argument("--opt", action="append", default=[], metavar="NAME=VALUE", help="an option the output depends on")
    p.add_argument("--stale", action="append", default=[], metavar="FILE",
                   help="run: a file of an interrupted run to delete if that run had other options or inputs")
    p.add_argument("--code", action="store_true", help="option code=<digest of the recipe's code and conf files>")
    p.add_argument("--steps", metavar="LOG", help="write: also the step stamps listed in LOG and their inputs")
    p.add_argument("--recorded", action="store_true", help="check: also the inputs the stamp file records")
    p.add_argument("inputs", nargs="*", help="files whose contents the output depends on (a missing one counts too)")
    a = p.parse_intermixed_args(argv)  # options may follow the stamp file
    if (a.action == "run") != bool(command):
        p.error("a command after -- goes with run, and only with run")
    opts = {}
    for o in a.opt:
        name, eq, value = o.partition("=")
        if not eq or not name:
            p.error(f"--opt expects NAME=VALUE, got {o!r}")
        opts[name] = value
    if a.code:
        opts["code"] = code_digest()
    inputs = list(dict.fromkeys(a.inputs + (logged_inputs(a.steps) if a.steps else []) +
                                (recorded_inputs(a.stamp) if a.recorded else [])))
    st = Stamp(a.stamp, opts, inputs)
    if a.action == "check":
        return 0 if st.current() else 1
    if a.action == "run":
        return run(st, command, a.stale)
    if a.action == "write":
        st.write()
    else:
        st.clear()
    return 0


if __name__ == "__main__":
    run_main(main)
