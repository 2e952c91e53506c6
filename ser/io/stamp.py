"""Stamps: "up to date" means made from the same inputs with the same options, and finished.

A step writes its stamp file LAST, after its outputs are complete and validated: the digest of its
options and of the contents of its input files, upstream stamps included (so a change anywhere
upstream reaches every later step).  A re-run computes the digest of the current options and inputs;
equal to the stamp's first line = up to date.  Contents, not modification times: an upstream re-run
that rewrote identical files changes nothing, and a kill before the stamp leaves no (or an old) stamp,
so the step is redone.  The lines after the digest say what went in (to see why a step re-ran).

Kaldi has no such mechanism (its scripts redo the work or test that a file exists); this is the
mechanism of ``make``-like tools with content hashes.  Shell steps use it through
``python -m ser.bin.stamp check|write <stamp-file> [--opt k=v ...] <input-file>...``.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Iterable, Mapping

from ser.io.atomic import atomic_write_text

ABSENT = "absent"


def digest(*parts) -> str:
    """sha256 over the ``repr`` of each part (plain values, lists, dicts with a stable order)."""
    h = hashlib.sha256()
    for p in parts:
        h.update(repr(p).encode())
        h.update(b"\0")
    return h.hexdigest()


def file_digest(path: str | os.PathLike) -> str:
    """sha256 of the file's bytes; ``"absent"`` for a missing file (absence is an input state too)."""
    h = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    except FileNotFoundError:
        return ABSENT
    return h.hexdigest()


class Stamp:
    """The stamp file ``path`` of a step with ``options`` reading ``inputs``."""

    def __init__(self, path: str | os.PathLike, options: Mapping[str, object] | None = None,
                 inputs: Iterable[str | os.PathLike] = ()):
        self.path = Path(path)
        self.options = dict(sorted((options or {}).items()))
        self.inputs = [(str(p), file_digest(p)) for p in inputs]
        self.value = digest(self.options, self.inputs)

    def current(self) -> bool:
        """True if the stamp file records exactly these options and inputs."""
        try:
            first = self.path.read_text(encoding="utf-8").split("\n", 1)[0]
        except (FileNotFoundError, UnicodeDecodeError):
            return False
        return first == self.value

    def text(self) -> str:
        """The stamp file's content (to write it inside an atomic directory change)."""
        lines = [self.value] + [f"option {k}={v}" for k, v in self.options.items()] + \
                [f"input {p} {h}" for p, h in self.inputs]
        return "\n".join(lines) + "\n"

    def write(self) -> None:
        atomic_write_text(self.path, self.text())

    def clear(self) -> None:
        """Remove the stamp before changing the outputs, so a kill in between cannot leave a stale one."""
        self.path.unlink(missing_ok=True)


def listing(folder: str | os.PathLike, pattern: str) -> str:
    """Digest of the names, sizes and modification times of ``folder``'s files matching ``pattern``
    (``**/`` allowed): what identifies a corpus's audio without reading gigabytes."""
    rows = []
    for p in sorted(Path(folder).glob(pattern)):
        st = p.stat()
        rows.append((str(p.relative_to(folder)), st.st_size, st.st_mtime_ns))
    return digest(rows)


def dir_files(folder: str | os.PathLike) -> list[Path]:
    """The files directly in ``folder`` (a data dir as an input: its tables and stamps), not temp files."""
    return sorted(p for p in Path(folder).iterdir() if p.is_file() and not p.name.endswith(".tmp"))
