"""Atomic output: write to a temporary sibling, rename into place when complete.

Every stage writes through these helpers so that a killed job never leaves a
half-written file under its final name, and re-running the stage is safe.
(Kaldi gets the same effect by writing ``.tmp`` files and ``mv``-ing them.)

The temporary name is fixed (``<path>.tmp``, a directory's ``<path>.tmp``), as Kaldi's:
what a killed writer left behind is replaced by the next writer of the same output, so
interrupted runs do not pile up temp files.  Files are created with mode 0666 minus the
user's umask, like any other file (``mkstemp`` would make them 0600).

Durability (the usual durable-rename sequence; Kaldi's ``mv`` does none of it): a file's data is
fsynced before its rename and its directory after it, so after a crash the name holds the complete
new content or the old one; a directory built by :func:`atomic_dir` has every file and folder in it
fsynced before the rename and the parent fsynced after.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
from pathlib import Path
from typing import IO, Iterator

from ser.io.faults import kill_point


def tmp_path(path: str | os.PathLike) -> Path:
    """The temporary sibling an atomic writer of ``path`` uses."""
    path = Path(path)
    return path.with_name(path.name + ".tmp")


def _unique_tmp(path: Path) -> tuple[Path, int]:
    """A new temporary sibling ``<path>.<pid>.<n>.tmp`` of this process, created (O_EXCL) and opened."""
    for n in range(1000):
        tmp = path.with_name(f"{path.name}.{os.getpid()}.{n}.tmp")
        try:
            return tmp, os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            continue
    raise FileExistsError(f"{path}: no free temporary name")


def fsync_dir(path: str | os.PathLike) -> None:
    """fsync the directory ``path``: makes the renames and creations in it durable.  A file system
    that cannot fsync a directory (EINVAL, ENOTSUP) is left as it is."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    except OSError as e:
        if e.errno not in (errno.EINVAL, errno.ENOTSUP):
            raise
    finally:
        os.close(fd)


def fsync_tree(root: str | os.PathLike) -> None:
    """fsync every regular file and every directory under ``root`` (``root`` last)."""
    for top, dirs, files in os.walk(root, topdown=False):
        for name in files:
            p = os.path.join(top, name)
            if os.path.isfile(p) and not os.path.islink(p):
                fd = os.open(p, os.O_RDONLY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
        fsync_dir(top)


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w", encoding: str | None = "utf-8",
                unique: bool = False) -> Iterator[IO]:
    """Open ``path`` for writing via ``<path>.tmp``; rename on success, delete on error.
    ``unique=True``: via a temporary name of this process (``<path>.<pid>.<n>.tmp``), for writers that
    may run at once on one output (ser-infer): the last rename wins, neither writes into the other's file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    binary = "b" in mode
    if unique:
        tmp, fd = _unique_tmp(path)
    else:
        tmp = tmp_path(path)
        tmp.unlink(missing_ok=True)  # a killed writer's leftover (its mode must not carry over)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # the umask applies
    try:
        with os.fdopen(fd, mode, encoding=None if binary else encoding) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        kill_point(f"rename:{path.parent.name}/{path.name}")
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_open(path, "w") as f:
        f.write(text)


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except OSError:  # no hard links on this file system
        shutil.copy2(src, dst)


def finish_swap(path: str | os.PathLike) -> None:
    """Complete the swap of a writer killed between :func:`atomic_dir`'s two renames: ``path`` is then
    missing, ``<path>.old`` is the previous and ``<path>.tmp`` the complete new directory."""
    path = Path(path)
    tmp, old = tmp_path(path), path.with_name(path.name + ".old")
    if not path.exists() and old.is_dir() and tmp.is_dir():
        fsync_tree(tmp)
        os.replace(tmp, path)
        fsync_dir(path.parent)
        shutil.rmtree(old)


def recover_dir(path: str | os.PathLike) -> None:
    """Deal with what a killed :func:`atomic_dir` left before writing ``path`` again: a finished build is
    swapped in (:func:`finish_swap`); a partial ``<path>.tmp`` or a leftover ``<path>.old`` is removed."""
    path = Path(path)
    finish_swap(path)
    for leftover in (tmp_path(path), path.with_name(path.name + ".old")):
        if leftover.is_dir() and not leftover.is_symlink():
            shutil.rmtree(leftover)
        elif leftover.exists() or leftover.is_symlink():
            leftover.unlink()


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike, update: bool = False) -> Iterator[Path]:
    """Build a directory under ``<path>.tmp``; it replaces ``path`` only when the block succeeds.

    ``update=True``: the new directory starts as a copy of the current ``path`` (files hard-linked, so
    it costs little), so a block that changes a few files changes the whole directory at once.
    Leftovers of a killed run are dealt with first (:func:`recover_dir`).
    """
    path = Path(path)
    recover_dir(path)
    tmp, old = tmp_path(path), path.with_name(path.name + ".old")
    if update and path.is_dir():
        shutil.copytree(path, tmp, symlinks=True, copy_function=_link_or_copy)
    else:
        tmp.mkdir(parents=True)
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    fsync_tree(tmp)
    if path.exists():
        os.replace(path, old)
        kill_point(f"swap:{path.parent.name}/{path.name}")
        os.replace(tmp, path)
        fsync_dir(path.parent)
        shutil.rmtree(old)
    else:
        kill_point(f"rename:{path.parent.name}/{path.name}")
        os.replace(tmp, path)
        fsync_dir(path.parent)
