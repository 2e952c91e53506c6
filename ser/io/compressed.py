"""Kaldi's compressed matrices (``CM``, ``CM2``, ``CM3``): a port of src/matrix/compressed-matrix.cc.

``copy-feats --compress=true`` (steps/make_mfcc.sh, steps/online/nnet2/extract_ivectors_online.sh)
stores each matrix as a :class:`CompressedMatrix` chosen by ``--compression-method`` (default
``kAutomaticMethod``: ``kSpeechFeature`` for more than 8 rows, else ``kTwoByteAuto``):

* ``CM``  (kOneByteWithColHeaders): a global header (min_value, range: float32; num_rows, num_cols:
  int32), then per column the 0th, 25th, 75th and 100th percentiles quantised to uint16 on the
  global [min_value, min_value + range], then one byte per element, column by column: bytes 0..64
  map linearly onto [p0, p25], 64..192 onto [p25, p75], 192..255 onto [p75, p100];
* ``CM2`` (kTwoByte): the global header, then a uint16 per element (row-major) on the global range;
* ``CM3`` (kOneByte): the global header, then a uint8 per element (row-major).

The binary layout after the matrix's ``\\0B`` is the token (``"CM "``, ``"CM2 "``, ``"CM3 "``), the
16-byte header (Kaldi does not write its 4-byte ``format`` field) and the data, little-endian.
Arithmetic follows the C++ exactly, including where it mixes float and double (``f * 65535 + 0.499``:
a float product, a double sum, truncated), so the bytes equal what Kaldi writes for the same float
matrix; a float64 input is first rounded to float32, which Kaldi does on every element it encodes
(FloatToUint16/FloatToChar take a float) and which keeps the order statistics.

The encode is vectorised over whole matrices (numpy); no per-element Python loops.
"""

from __future__ import annotations

from typing import BinaryIO

import numpy as np

# enum CompressionMethod (src/matrix/compressed-matrix.h)
kAutomaticMethod, kSpeechFeature, kTwoByteAuto, kTwoByteSignedInteger = 1, 2, 3, 4
kOneByteAuto, kOneByteUnsignedInteger, kOneByteZeroOne = 5, 6, 7

_HEADER = np.dtype([("min_value", "<f4"), ("range", "<f4"), ("num_rows", "<i4"), ("num_cols", "<i4")])
_F32 = np.float32


class CompressedMatrixError(ValueError):
    pass


def _format(method: int, num_rows: int) -> str:
    """The token of ComputeGlobalHeader's format for ``method``."""
    if method == kAutomaticMethod:
        method = kSpeechFeature if num_rows > 8 else kTwoByteAuto
    if method == kSpeechFeature:
        return "CM"
    if method in (kTwoByteAuto, kTwoByteSignedInteger):
        return "CM2"
    if method in (kOneByteAuto, kOneByteUnsignedInteger, kOneByteZeroOne):
        return "CM3"
    raise CompressedMatrixError(f"invalid compression method {method} (1..7, see Kaldi's compressed-matrix.h)")


def global_header(mat: np.ndarray, method: int = kAutomaticMethod) -> tuple[str, np.float32, np.float32]:
    """ComputeGlobalHeader: (token, min_value, range) of float32 ``mat``."""
    token = _format(method, mat.shape[0])
    if method in (kAutomaticMethod, kSpeechFeature, kTwoByteAuto, kOneByteAuto):
        lo, hi = mat.min(), mat.max()
        if not (np.isfinite(lo) and np.isfinite(hi)):
            raise CompressedMatrixError("cannot compress a matrix with NaN's or Inf's")
        if hi == lo:  # max_value = min_value + (1.0 + fabs(min_value)): a double sum stored as float
            hi = _F32(float(lo) + (1.0 + abs(float(lo))))
        return token, _F32(lo), _F32(hi - lo)
    return token, *{kTwoByteSignedInteger: (_F32(-32768.0), _F32(65535.0)),
                    kOneByteUnsignedInteger: (_F32(0.0), _F32(255.0)),
                    kOneByteZeroOne: (_F32(0.0), _F32(1.0))}[method]


def _float_to_uint(x: np.ndarray, min_value: np.float32, range_: np.float32, top: int) -> np.ndarray:
    """FloatToUint16 (top 65535) / FloatToUint8 (top 255): ``static_cast<int>(f * top + 0.499)``."""
    with np.errstate(invalid="ignore", divide="ignore"):
        f = np.clip((x - min_value) / range_, _F32(0.0), _F32(1.0))
    return np.trunc((f * _F32(top)).astype(np.float64) + 0.499).astype(np.int64)


def uint16_to_float(q: np.ndarray, min_value: np.float32, range_: np.float32) -> np.ndarray:
    """Uint16ToFloat: ``min_value + range * 1.52590218966964e-05F * value``, in float."""
    return min_value + (range_ * _F32(1.52590218966964e-05)) * np.asarray(q).astype(_F32)


def col_headers(mat: np.ndarray, min_value: np.float32, range_: np.float32) -> np.ndarray:
    """ComputeColHeader for every column: uint16 (num_cols, 4) percentiles 0, 25, 75, 100."""
    n = mat.shape[0]
    if n >= 5:  # the nth_element calls pick these order statistics
        q = n // 4
        idx = [0, q, 3 * q, n - 1]
        s = np.partition(mat.T, idx, axis=1)[:, idx].T  # rows of the transpose: contiguous columns
    else:  # the "pathological case": sorted, positions 0..3 where present
        idx = list(range(n))
        s = np.sort(mat, axis=0)
    u = _float_to_uint(s, min_value, range_, 65535)
    h = np.empty((4, mat.shape[1]), dtype=np.int64)
    h[0] = np.minimum(u[0], 65532)
    for k, cap in ((1, 65533), (2, 65534), (3, None)):
        if k < len(idx):
            v = np.maximum(u[k], h[k - 1] + 1)
            h[k] = v if cap is None else np.minimum(v, cap)
        else:  # fewer than k + 1 rows: the previous percentile + 1
            h[k] = h[k - 1] + 1
    return h.T.astype(np.uint16)


def float_to_char(x: np.ndarray, p0, p25, p75, p100) -> np.ndarray:
    """FloatToChar elementwise (per-column p's broadcast): value < p25 -> bytes 0..64 over [p0, p25],
    < p75 -> 64..192 over [p25, p75], else 192..255 over [p75, p100]; byte = base + static_cast<int>(f *
    scale + 0.5) clamped to the segment, f = (value - lo) / (hi - lo) in float."""
    a, b = x >= p25, x >= p75  # p25 <= p75, so these are Kaldi's two tests
    sel = lambda s0, s1, s2: np.where(b, s2, np.where(a, s1, s0))  # noqa: E731
    lo, hi = sel(p0, p25, p75), sel(p25, p75, p100)
    scale, base, top = sel(_F32(64), _F32(128), _F32(63)), sel(_F32(0), _F32(64), _F32(192)), sel(_F32(64), _F32(192), _F32(255))
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        y = (x - lo) / (hi - lo) * scale  # float, as the C++
        # the C++ adds 0.5 in double and truncates: floor(y + 0.5) exactly = r + (y - r >= 0.5), r = floor(y)
        # (y - r is exact in float); truncation and floor differ only below 0, where the clamp decides
        r = np.floor(y)
        ans = base + r + (y - r >= _F32(0.5))
    return np.minimum(np.fmax(ans, base), top).astype(np.uint8)  # fmax: NaN (0/0, collapsed p's) -> base


def char_to_float(c: np.ndarray, p0, p25, p75, p100) -> np.ndarray:
    """CharToFloat: float products, the ``* (1/64.0)`` etc. and the sum in double, returned as float."""
    cf = c.astype(np.int32)
    lo = p0.astype(np.float64) + ((p25 - p0) * cf.astype(_F32)).astype(np.float64) * (1 / 64.0)
    mid = p25.astype(np.float64) + ((p75 - p25) * (cf - 64).astype(_F32)).astype(np.float64) * (1 / 128.0)
    top = p75.astype(np.float64) + ((p100 - p75) * (cf - 192).astype(_F32)).astype(np.float64) * (1 / 63.0)
    return np.where(cf <= 64, lo, np.where(cf <= 192, mid, top)).astype(_F32)


def compress(mat: np.ndarray, method: int = kAutomaticMethod) -> bytes:
    """CompressedMatrix(mat, method).Write(binary): the token and everything after it."""
    m = np.asarray(mat)
    if m.ndim != 2 or m.shape[0] == 0 or m.shape[1] == 0:
        # Kaldi stores an empty matrix as a NULL pointer and writes a 20-byte header that its reader
        # reads as 16 bytes: callers write empty matrices uncompressed instead
        raise CompressedMatrixError(f"cannot compress a matrix of shape {m.shape}: need rows and columns")
    m = np.ascontiguousarray(m, dtype=_F32)
    token, lo, rng = global_header(m, method)
    head = np.array([(lo, rng, m.shape[0], m.shape[1])], dtype=_HEADER).tobytes()
    if token == "CM2":
        data = _float_to_uint(m, lo, rng, 65535).astype("<u2").tobytes()
    elif token == "CM3":
        data = _float_to_uint(m, lo, rng, 255).astype("<u1").tobytes()
    else:
        h = col_headers(m, lo, rng)
        p = uint16_to_float(h, lo, rng)  # (num_cols, 4) float
        data = h.astype("<u2").tobytes() + float_to_char(m, *p.T).T.tobytes()  # bytes column-major
    return f"{token} ".encode() + head + data


def decompress(token: str, payload: bytes | memoryview, what: str = "compressed matrix") -> np.ndarray:
    """CompressedMatrix::Read + CopyToMat: float32 matrix of ``token`` and the bytes after it."""
    if token not in ("CM", "CM2", "CM3"):
        raise CompressedMatrixError(f"{what}: unexpected token {token!r}, expecting CM, CM2 or CM3")
    if len(payload) < _HEADER.itemsize:
        raise CompressedMatrixError(f"{what}: truncated header")
    lo, rng, rows, cols = np.frombuffer(payload, dtype=_HEADER, count=1)[0]
    if cols == 0:  # Kaldi's empty matrix
        return np.zeros((0, 0), dtype=_F32)
    if rows <= 0 or cols < 0:
        raise CompressedMatrixError(f"{what}: bad dimensions {rows}x{cols}")
    size = data_size(token, int(rows), int(cols))
    body = np.frombuffer(payload, dtype=np.uint8, count=size, offset=_HEADER.itemsize) \
        if len(payload) >= _HEADER.itemsize + size else None
    if body is None:
        raise CompressedMatrixError(f"{what}: truncated data ({len(payload) - _HEADER.itemsize} of {size} bytes)")
    if token == "CM":
        h = body[:8 * cols].view("<u2").reshape(cols, 4)
        p = uint16_to_float(h, lo, rng)
        b = body[8 * cols:].reshape(cols, rows)
        return np.ascontiguousarray(char_to_float(b, *(p[:, k:k + 1] for k in range(4))).T)
    if token == "CM2":
        inc = _F32(float(rng) * (1.0 / 65535.0))
        return lo + body.view("<u2").reshape(rows, cols).astype(_F32) * inc
    inc = _F32(float(rng) * (1.0 / 255.0))
    return lo + body.reshape(rows, cols).astype(_F32) * inc


def data_size(token: str, rows: int, cols: int) -> int:
    """DataSize less the global header: bytes after the 16 header bytes."""
    return {"CM": cols * (8 + rows), "CM2": 2 * rows * cols, "CM3": rows * cols}[token]


def read_compressed(fd: BinaryIO, token: str, what: str = "compressed matrix") -> np.ndarray:
    """Read the matrix after its token from stream ``fd``."""
    if token not in ("CM", "CM2", "CM3"):
        raise CompressedMatrixError(f"{what}: unexpected token {token!r}, expecting CM, CM2 or CM3")
    head = fd.read(_HEADER.itemsize)
    if len(head) < _HEADER.itemsize:
        raise CompressedMatrixError(f"{what}: truncated header")
    _, _, rows, cols = np.frombuffer(head, dtype=_HEADER, count=1)[0]
    size = data_size(token, int(rows), int(cols)) if rows > 0 and cols > 0 else 0
    return decompress(token, head + fd.read(size), what)
