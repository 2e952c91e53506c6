"""Kaldi tables: binary ``ark`` archives indexed by ``scp`` files.

Mirrors Kaldi's ``util/kaldi-table.h`` conventions for the subset we need:
``<key> <ark-path>:<byte-offset>`` scp lines pointing into binary arks holding
``FM``/``DM`` matrices (or ``FV``/``DV`` vectors) or Kaldi's compressed matrices
(``CM``/``CM2``/``CM3``, :mod:`ser.io.compressed`, written with ``compress=True`` as
``copy-feats --compress=true``).  Uncompressed matrices are written and read through the
``kaldi-io`` package, compressed ones through our port of Kaldi's CompressedMatrix, so Kaldi
binaries (``copy-feats``, ``feat-to-dim``...) can read what we write and vice versa.
Readers always get float32 matrices.
"""

from __future__ import annotations

import io
import os
import sys
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

# kaldi-io prints a banner when KALDI_ROOT points nowhere; we never call Kaldi binaries.
os.environ.setdefault("KALDI_ROOT", sys.prefix)
import kaldi_io  # noqa: E402

from ser.io.atomic import atomic_open  # noqa: E402
from ser.io.compressed import CompressedMatrixError, compress, data_size, decompress, read_compressed  # noqa: E402


class TableError(RuntimeError):
    pass


def read_scp(path: str | os.PathLike) -> dict[str, str]:
    """``<key> <rxspecifier>`` lines → ordered dict.  Duplicate keys are an error."""
    out: dict[str, str] = {}
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            parts = line.split(maxsplit=1)
            if len(parts) != 2:
                raise TableError(f"{path}:{n}: expected '<key> <rxspecifier>', got {line!r}")
            if parts[0] in out:
                raise TableError(f"{path}:{n}: duplicate key {parts[0]!r}")
            out[parts[0]] = parts[1]
    return out


def read_matrix(rxspec: str, key: str | None = None) -> np.ndarray:
    """Read one matrix from ``ark:offset`` / a single-matrix file; returns float32.

    A matrix holding NaN or Inf is an error naming ``key`` (the utterance, when the caller knows it)
    and the rxspecifier: features and i-vectors are never non-finite, and one such value would spread
    through every sum it enters.
    """
    try:
        m = np.asarray(_read_mat(rxspec), dtype=np.float32)
    except Exception as e:  # kaldi-io raises assorted types
        raise TableError(f"cannot read matrix {rxspec!r}: {e}") from e
    if not np.isfinite(m).all():
        bad = int(m.size - np.count_nonzero(np.isfinite(m)))
        who = f"utterance {key}: " if key else ""
        raise TableError(f"{who}{rxspec}: {bad} non-finite values (NaN/Inf) in a {'x'.join(map(str, m.shape))} matrix")
    return m


def _read_mat(rxspec: str) -> np.ndarray:
    """kaldi-io's read_mat, but compressed matrices (kaldi-io decodes only ``CM``, in float
    arithmetic that differs from Kaldi's by an ulp) go to ser.io.compressed."""
    fd = kaldi_io.open_or_fd(rxspec)
    try:
        if not fd.seekable():  # a pipe ("cmd |") holds one matrix: read it all to look at its header
            fd, pipe = io.BytesIO(fd.read()), fd
            pipe.close()
        pos = fd.tell()
        head = fd.read(6)
        fd.seek(pos)
        if head[:4] != b"\0BCM":
            return kaldi_io.read_mat(fd)
        token = head[2:].split(b" ", 1)[0].decode("latin1")
        fd.read(2 + len(token) + 1)
        return read_compressed(fd, token, rxspec)
    finally:
        fd.close()


# ------------------------------------------------------------------------------------------
# one binary matrix in a byte buffer (an ark at an scp offset, or a shard's copy of those bytes)
# ------------------------------------------------------------------------------------------
MATRIX_HEAD_BYTES = 22  # "\0B" + the longest token "CM2 " + CompressedMatrix's 16-byte global header
_FULL_TOKENS = {"FM": "<f4", "DM": "<f8"}


def matrix_header(buf: bytes | memoryview | np.ndarray, what: str) -> tuple[str, int, int, int] | None:
    """``(token, rows, cols, size)`` of the binary Kaldi matrix at the start of ``buf`` (Kaldi's
    ``MatrixBase::Read`` / ``CompressedMatrix::Read`` after ``"\\0B"``): ``size`` counts every byte from the
    ``"\\0B"`` to the matrix's end.  None when ``buf`` does not start a binary FM/DM/CM/CM2/CM3 matrix
    (a text ark, a vector): the caller reads such entries with :func:`read_matrix`."""
    b = bytes(buf[:MATRIX_HEAD_BYTES])
    if b[:2] != b"\0B":
        return None
    token = b[2:].split(b" ", 1)[0].decode("latin1")
    start = 2 + len(token) + 1
    if token in _FULL_TOKENS:  # "\4" int32 rows "\4" int32 cols (kaldi-io's _read_mat_binary)
        if len(b) < start + 10 or b[start] != 4 or b[start + 5] != 4:
            raise TableError(f"{what}: truncated or malformed {token} matrix header")
        rows, cols = (int(np.frombuffer(b, "<i4", 1, start + k)[0]) for k in (1, 6))
        return token, rows, cols, start + 10 + rows * cols * np.dtype(_FULL_TOKENS[token]).itemsize
    if token in ("CM", "CM2", "CM3"):
        if len(b) < start + 16:
            raise TableError(f"{what}: truncated compressed matrix header")
        rows, cols = (int(np.frombuffer(b, "<i4", 1, start + k)[0]) for k in (8, 12))
        return token, rows, cols, start + 16 + (data_size(token, rows, cols) if rows > 0 and cols > 0 else 0)
    return None


def decode_matrix(buf: bytes | memoryview | np.ndarray, what: str) -> np.ndarray:
    """The float32 matrix of the bytes :func:`matrix_header` describes (all of them): the values
    :func:`read_matrix` returns for the same entry (FM as stored, DM rounded to float32, compressed
    matrices through :func:`ser.io.compressed.decompress`); a non-finite value is an error naming ``what``."""
    head = matrix_header(buf, what)
    if head is None:
        raise TableError(f"{what}: not a binary FM/DM/CM/CM2/CM3 matrix")
    token, rows, cols, size = head
    if len(buf) < size:
        raise TableError(f"{what}: truncated matrix ({len(buf)} of {size} bytes)")
    start = 2 + len(token) + 1
    if token in _FULL_TOKENS:
        m = np.frombuffer(buf, _FULL_TOKENS[token], rows * cols, start + 10).reshape(rows, cols)
        m = m.astype(np.float32)  # a copy: never a view of the caller's buffer
    else:
        try:
            m = decompress(token, memoryview(np.frombuffer(buf, np.uint8, size - start, start)), what)
        except CompressedMatrixError as e:
            raise TableError(str(e)) from e
    if not np.isfinite(m).all():
        bad = int(m.size - np.count_nonzero(np.isfinite(m)))
        raise TableError(f"{what}: {bad} non-finite values (NaN/Inf) in a {rows}x{cols} matrix")
    return m


def encode_matrix(mat: np.ndarray) -> bytes:
    """A float32 matrix as the bytes of a binary FM entry (``"\\0BFM "`` ...), lossless."""
    m = np.ascontiguousarray(mat, dtype=np.float32)
    return (b"\0BFM \4" + np.int32(m.shape[0]).tobytes() + b"\4" + np.int32(m.shape[1]).tobytes()
            + m.astype("<f4").tobytes())


def iter_scp_matrices(scp: str | os.PathLike, keys: Iterable[str] | None = None) -> Iterator[tuple[str, np.ndarray]]:
    table = read_scp(scp)
    for k in keys if keys is not None else table:
        if k not in table:
            raise TableError(f"{scp}: no entry for {k!r}")
        yield k, read_matrix(table[k], key=k)


def load_scp_matrices(scp: str | os.PathLike) -> dict[str, np.ndarray]:
    return dict(iter_scp_matrices(scp))


class ArkScpWriter:
    """Write ``ark`` + ``scp`` together; both appear atomically when the writer closes cleanly.

    >>> with ArkScpWriter("mfcc/raw_mfcc.1.ark", "mfcc/raw_mfcc.1.scp") as w:
    ...     w.write("utt1", feats)
    """

    def __init__(self, ark: str | os.PathLike, scp: str | os.PathLike, compress: bool = False):
        self.ark = Path(ark).resolve()
        self.compress = compress  # copy-feats --compress (kAutomaticMethod: CM over 8 rows, else CM2)
        self.scp = Path(scp)
        self._ark_cm = atomic_open(self.ark, "wb")
        self._scp_cm = atomic_open(self.scp, "w")
        self._keys: set[str] = set()

    def __enter__(self) -> "ArkScpWriter":
        self._ark = self._ark_cm.__enter__()
        try:
            self._scp_f = self._scp_cm.__enter__()
        except BaseException:
            self._ark_cm.__exit__(*sys.exc_info())
            raise
        return self

    def write(self, key: str, mat: np.ndarray) -> None:
        if not key or any(c.isspace() for c in key):
            raise TableError(f"{self.ark}: invalid key {key!r}")
        if key in self._keys:
            raise TableError(f"{self.ark}: duplicate key {key!r}")
        self._keys.add(key)
        mat = np.ascontiguousarray(mat)
        if mat.dtype not in (np.float32, np.float64):
            mat = mat.astype(np.float32)
        if mat.ndim == 1:
            mat = mat[None, :]
        offset = self._ark.tell() + len(key.encode("latin1")) + 1
        if self.compress and mat.size:  # an empty matrix stays FM: Kaldi cannot read its empty CM back
            try:
                body = compress(mat)
            except CompressedMatrixError as e:
                raise TableError(f"{self.ark}: {key}: {e}") from e
            self._ark.write(key.encode("latin1") + b" \0B" + body)
        else:
            kaldi_io.write_mat(self._ark, mat, key=key)
        self._scp_f.write(f"{key} {self.ark}:{offset}\n")

    def __exit__(self, *exc) -> None:
        # ark first, so the scp never points into a missing file
        self._ark_cm.__exit__(*exc)
        self._scp_cm.__exit__(*exc)
