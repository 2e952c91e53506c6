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

Stage stamps (run.sh): while a stage runs, every step stamp found current or written is listed in the
file named by $SER_STAMP_LOG; the stage's stamp then records the recipe's code and configuration, the
earlier stages' stamps, those step stamps and every input they record.  A re-run whose digest of all
these is the same skips the whole stage in one process, without asking each step.  What it trusts:
content hashes of those files (all small: lists, tables, stamps, models of a few MB; no times), and
that outputs are not edited by hand after their stamp was written (as every stamp does).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Iterable, Mapping

from ser.io.atomic import atomic_write_text

ABSENT = "absent"
LOG_ENV = "SER_STAMP_LOG"  # a file listing the step stamps a stage used (run.sh's stage stamps)
CODE = ("run.sh", "path.sh", "local", "steps", "utils", "conf", "ser")  # what the recipe does


def _log_use(path: Path) -> None:
    """List ``path`` in $SER_STAMP_LOG (one short O_APPEND write: parallel jobs do not interleave)."""
    log = os.environ.get(LOG_ENV)
    if log:
        with open(log, "a", encoding="utf-8") as f:
            f.write(f"{path}\n")


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
        if first != self.value:
            return False
        _log_use(self.path)
        return True

    def text(self) -> str:
        """The stamp file's content (to write it inside an atomic directory change; then call
        :meth:`committed`)."""
        lines = [self.value] + [f"option {k}={v}" for k, v in self.options.items()] + \
                [f"input {p} {h}" for p, h in self.inputs]
        return "\n".join(lines) + "\n"

    def write(self) -> None:
        atomic_write_text(self.path, self.text())
        _log_use(self.path)

    def committed(self) -> None:
        """The caller wrote :meth:`text` to ``path`` (with the outputs, atomically): list it in
        $SER_STAMP_LOG as :meth:`write` and :meth:`current` do, so that a stage stamp records the same
        step stamps whether its steps ran or were up to date."""
        _log_use(self.path)

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


def recorded_inputs(path: str | os.PathLike) -> list[str]:
    """The input files the stamp file ``path`` records (none if it is missing or unreadable)."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()[1:]
    except (FileNotFoundError, UnicodeDecodeError):
        return []
    return [line[6:].rsplit(" ", 1)[0] for line in lines if line.startswith("input ")]


def logged_inputs(log: str | os.PathLike) -> list[str]:
    """The step stamps listed in a stage's $SER_STAMP_LOG file and every input they record, in order."""
    out: dict[str, None] = {}
    for stamp in Path(log).read_text(encoding="utf-8").split():
        out[stamp] = None
        out.update(dict.fromkeys(recorded_inputs(stamp)))
    return list(out)


def code_digest(root: str | os.PathLike = ".") -> str:
    """Digest of the recipe's scripts, configuration files and Python sources (``CODE`` under ``root``):
    a stage stamp is only trusted while none of them changed."""
    root = Path(root)
    files = []
    for name in CODE:
        p = root / name
        files += [p] if p.is_file() else sorted(f for f in p.rglob("*") if f.is_file() and f.suffix in
                                                 (".sh", ".py", ".conf", ".yaml", ".txt"))
    return digest([(str(f.relative_to(root)), file_digest(f)) for f in files])
