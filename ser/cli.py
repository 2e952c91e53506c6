"""What every program under ``ser/bin/`` shares: bool options, ``--device``, logging, the error path.

A program is ``ser/bin/<name>.py`` with ``main(argv=None) -> int`` and ends with::

    if __name__ == "__main__":
        run_main(main)

``main`` raises on bad input; :func:`run_main` (:func:`run_program` in-process) turns the errors the library raises for bad input
(``ValueError``, ``OSError``, ``RuntimeError`` and their subclasses: DataDirError, AudioError,
ConfigError, ...) into ONE line ``<prog>: <message>`` on stderr and exit status 1, as a Kaldi binary
prints one ``ERROR (<prog>...)`` line.  Set ``SER_TRACEBACK=1`` to get the traceback instead.
Usage errors stay argparse's (usage + ``<prog>: error: ...``, exit status 2).
"""

from __future__ import annotations

import argparse
import inspect
import logging
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Callable, NoReturn

if TYPE_CHECKING:
    import torch

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
EXPECTED_ERRORS = (ValueError, OSError, RuntimeError)


def str2bool(s: str) -> bool:
    """Kaldi-style bool option value: true/false (also 1/0, yes/no; any case)."""
    v = s.lower()
    if v in ("true", "1", "yes"):
        return True
    if v in ("false", "0", "no"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {s!r}")


def _device(s: str) -> torch.device:
    from ser.device import resolve_device  # imports torch: only programs with --device pay for it

    try:
        return resolve_device(s)
    except ValueError as e:  # a malformed value is a usage error; "no CUDA here" (RuntimeError) is not
        raise argparse.ArgumentTypeError(str(e)) from None


def add_device_argument(p: argparse.ArgumentParser, default: str = "auto") -> None:
    """``--device auto|cpu|cuda[:N]``, parsed to a ``torch.device`` by :func:`ser.device.resolve_device`."""
    p.add_argument("--device", type=_device, default=default,
                   help=f"auto (CUDA when available) | cpu | cuda[:N] (default {default})")


def setup_logging(verbose: int = 1, log_file: str | Path | None = None) -> None:
    """Log to stderr (the job's log under exp/.../log/) and, if given, to ``log_file`` too (appended, after
    a header with the command line and the start time, as a job log's: ser.jobs.open_log).

    verbose 0: warnings only, 1: info, 2: debug."""
    from ser.jobs import open_log

    level = {0: logging.WARNING, 1: logging.INFO}.get(verbose, logging.DEBUG)
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_file is not None:
        handlers.append(logging.StreamHandler(open_log(log_file)))
    logging.basicConfig(level=level, format=LOG_FORMAT, handlers=handlers)


def prog_name(main: Callable) -> str:
    """The program's name: its module's ``PROG`` if it sets one (``ser-infer``, a console script), else its
    module's file name (``train_chain`` for ser/bin/train_chain.py)."""
    return getattr(inspect.getmodule(main), "PROG", None) or Path(inspect.getfile(main)).stem


def run_program(main: Callable[[list[str] | None], int], argv: list[str] | None = None) -> int:
    """``main(argv)``'s exit status; an expected error prints one line ``<prog>: <message>`` and gives 1."""
    try:
        return main(argv)
    except EXPECTED_ERRORS as e:
        if os.environ.get("SER_TRACEBACK"):
            raise
        print(f"{prog_name(main)}: {e}", file=sys.stderr)
        return 1


def run_main(main: Callable[[list[str] | None], int]) -> NoReturn:
    """A program's entry point: exits with :func:`run_program`'s status for the command line.

    ``sys.argv[0]`` becomes the program's name, so argparse's usage and errors use the same name."""
    sys.argv[0] = prog_name(main)
    sys.exit(run_program(main))
