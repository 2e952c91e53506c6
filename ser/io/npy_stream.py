"""A file of records of numpy arrays, written and read one record at a time (bounded memory).

Used for what a training job keeps between its iterations (Gaussian selections, per-utterance
statistics): each record is ``n`` arrays stored back to back in ``.npy`` format (``np.save``), so the
reader streams them batch by batch instead of loading the file.  Written atomically (``<path>.tmp``,
renamed when complete); read with ``allow_pickle=False``; a truncated or foreign file is one error
naming the file.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator

import numpy as np

from ser.io.atomic import atomic_open


class NpyStreamError(ValueError):
    pass


class NpyStreamWriter:
    """``with NpyStreamWriter(path, n) as w: w.write(a, b)``: records of exactly ``n`` arrays."""

    def __init__(self, path: str | os.PathLike, n: int):
        self.path, self.n = Path(path), n

    def __enter__(self) -> "NpyStreamWriter":
        self._cm = atomic_open(self.path, "wb")
        self._f = self._cm.__enter__()
        np.save(self._f, np.array([self.n], dtype=np.int64))  # header: arrays per record
        return self

    def write(self, *arrays: np.ndarray) -> None:
        if len(arrays) != self.n:
            raise ValueError(f"{self.path}: a record has {self.n} arrays, got {len(arrays)}")
        for a in arrays:
            np.save(self._f, np.ascontiguousarray(a), allow_pickle=False)

    def __exit__(self, *exc) -> None:
        self._cm.__exit__(*exc)


def iter_npy_stream(path: str | os.PathLike, n: int) -> Iterator[tuple[np.ndarray, ...]]:
    """The records of ``path`` in the order written, each a tuple of ``n`` arrays."""
    p = Path(path)
    if not p.is_file():
        raise NpyStreamError(f"{p}: no such file (did the job that writes it finish?)")
    size = p.stat().st_size
    with open(p, "rb") as f:
        try:
            head = np.load(f, allow_pickle=False)
            if head.shape != (1,) or int(head[0]) != n:
                raise NpyStreamError(f"{p}: records of {head.tolist()} arrays, expected {n}")
            while f.tell() < size:
                yield tuple(np.load(f, allow_pickle=False) for _ in range(n))
        except NpyStreamError:
            raise
        except (ValueError, EOFError, OSError) as e:
            raise NpyStreamError(f"{p}: truncated or not a stream of .npy records ({e})") from e
