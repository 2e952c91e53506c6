"""Progress of long loops: a tqdm bar at a terminal, plain lines everywhere else (the home of every bar).

A job's stderr is its log (ser.jobs); tqdm redraws its bar with carriage returns, ~10 a second, so a bar
in a log is one "line" of many updates that ``less``, ``grep`` and ser.jobs.log_tail must undo.  Kaldi's
programs write plain lines to their logs (e.g. ``LOG (copy-feats[5.5]:main()) Copied 1374 feature
matrices``).  :func:`progress` is tqdm's loop wrapper with the same arguments: the bar when its stream is a
terminal; otherwise one line each time another ``every`` percent of ``total`` is done, and a last line with
the count and the elapsed time::

    features: 10% (138/1374) 0.6 s
    ...
    features: 1374/1374 it in 2.3 s

:func:`write` prints a line above a bar (tqdm.write) or plainly.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator
from typing import IO, TypeVar

T = TypeVar("T")


def is_terminal(stream: IO[str] | None) -> bool:
    try:
        return stream is not None and stream.isatty()
    except (AttributeError, ValueError):   # closed, or not a file
        return False


def progress(iterable: Iterable[T], total: int | None = None, desc: str | None = None, disable: bool = False,
             leave: bool = True, unit: str = "it", file: IO[str] | None = None, mininterval: float = 0.1,
             every: int = 10) -> Iterable[T]:
    """``iterable``, reporting its progress on ``file`` (default stderr): a tqdm bar at a terminal; else a
    plain line per ``every`` percent of ``total`` (``len(iterable)`` by default; unknown: the last line only)
    and one when the loop ends.  ``disable``: nothing printed."""
    if disable:
        return iterable
    stream = file if file is not None else sys.stderr
    if is_terminal(stream):
        from tqdm import tqdm

        return tqdm(iterable, total=total, desc=desc, leave=leave, unit=unit, file=stream, mininterval=mininterval)
    if total is None:
        total = len(iterable) if hasattr(iterable, "__len__") else None  # type: ignore[arg-type]
    return _lines(iterable, total, desc, unit, stream, every)


def _lines(iterable: Iterable[T], total: int | None, desc: str | None, unit: str, stream: IO[str],
           every: int) -> Iterator[T]:
    prefix = f"{desc}: " if desc else ""
    t0, n, next_pct = time.monotonic(), 0, every
    for x in iterable:
        yield x
        n += 1
        if total and n < total and 100 * n >= next_pct * total:
            pct = 100 * n // total
            print(f"{prefix}{pct}% ({n}/{total}) {time.monotonic() - t0:.1f} s", file=stream, flush=True)
            next_pct = (pct // every + 1) * every
    done = f"{n}/{total}" if total else str(n)
    print(f"{prefix}{done} {unit} in {time.monotonic() - t0:.1f} s", file=stream, flush=True)


def write(msg: str, file: IO[str] | None = None) -> None:
    """One line to ``file`` (default stderr) that does not break a bar running there."""
    stream = file if file is not None else sys.stderr
    if is_terminal(stream):
        from tqdm import tqdm

        tqdm.write(msg, file=stream)
    else:
        print(msg, file=stream, flush=True)


def fmt_elapsed(seconds: float) -> str:
    """``1m05s`` / ``1h02m05s``: an elapsed time in the console's progress lines (ser.jobs)."""
    s = int(seconds)
    return f"{s // 3600}h{s // 60 % 60:02d}m{s % 60:02d}s" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"
