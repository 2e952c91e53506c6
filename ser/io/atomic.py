"""Atomic output: write to a temporary sibling, rename into place when complete.

Every stage writes through these helpers so that a killed job never leaves a
half-written file under its final name, and re-running the stage is safe.
(Kaldi gets the same effect by writing ``.tmp`` files and ``mv``-ing them.)

The temporary name is fixed (``<path>.tmp``, a directory's ``<path>.tmp``), as Kaldi's:
what a killed writer left behind is replaced by the next writer of the same output, so
interrupted runs do not pile up temp files.  Files are created with mode 0666 minus the
user's umask, like any other file (``mkstemp`` would make them 0600).
"""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path
from typing import IO, Iterator


def tmp_path(path: str | os.PathLike) -> Path:
    """The temporary sibling an atomic writer of ``path`` uses."""
    path = Path(path)
    return path.with_name(path.name + ".tmp")


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w", encoding: str | None = "utf-8") -> Iterator[IO]:
    """Open ``path`` for writing via ``<path>.tmp``; rename on success, delete on error."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    binary = "b" in mode
    tmp = tmp_path(path)
    tmp.unlink(missing_ok=True)  # a killed writer's leftover (its mode must not carry over)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # the umask applies
    try:
        with os.fdopen(fd, mode, encoding=None if binary else encoding) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_open(path, "w") as f:
        f.write(text)


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Build a directory under ``<path>.tmp``; it replaces ``path`` only when the block succeeds.

    A leftover ``<path>.tmp`` or ``<path>.old`` of a killed run is removed first.  Between the two
    renames ``path`` is briefly absent (never half-written); a kill there leaves ``<path>.old``, which
    the next run removes.
    """
    path = Path(path)
    tmp = tmp_path(path)
    old = path.with_name(path.name + ".old")
    for leftover in (tmp, old):
        if leftover.exists():
            shutil.rmtree(leftover)
    tmp.mkdir(parents=True)
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if path.exists():
        os.replace(path, old)
        os.replace(tmp, path)
        shutil.rmtree(old)
    else:
        os.replace(tmp, path)
