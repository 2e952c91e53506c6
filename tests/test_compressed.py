"""Kaldi's compressed matrices (ser.io.compressed): the bytes equal a brute-force pure-Python transcription
of src/matrix/compressed-matrix.cc (float arithmetic emulated by rounding every float operation to float32),
kaldiio (an independent reader) decodes them, and the error stays within the bounds Kaldi's encoding
guarantees."""

from __future__ import annotations

import struct

import kaldiio
import numpy as np
import pytest

from ser.io import compressed as C
from ser.io.tables import ArkScpWriter, TableError, load_scp_matrices, read_matrix


def f32(x: float) -> float:
    """Round a double to float (every float operation of the C++ below is correctly rounded)."""
    return struct.unpack("<f", struct.pack("<f", x))[0]


# ---- a transcription of compressed-matrix.cc, one element at a time --------------------------------------
def ref_global_header(rows: list[list[float]], method: int) -> tuple[str, float, float]:
    n = len(rows)
    if method == C.kAutomaticMethod:
        method = C.kSpeechFeature if n > 8 else C.kTwoByteAuto
    fmt = {2: "CM", 3: "CM2", 4: "CM2", 5: "CM3", 6: "CM3", 7: "CM3"}[method]
    if method in (4, 6, 7):
        return fmt, {4: -32768.0, 6: 0.0, 7: 0.0}[method], {4: 65535.0, 6: 255.0, 7: 1.0}[method]
    lo, hi = min(min(r) for r in rows), max(max(r) for r in rows)
    if hi == lo:
        hi = f32(lo + (1.0 + abs(lo)))
    return fmt, lo, f32(hi - lo)


def ref_float_to_uint(lo: float, rng: float, v: float, top: int) -> int:
    f = f32(f32(v - lo) / rng)
    f = min(max(f, 0.0), 1.0)
    return int(f32(f * top) + 0.499)


def ref_uint16_to_float(lo: float, rng: float, q: int) -> float:
    return f32(lo + f32(f32(rng * f32(1.52590218966964e-05)) * q))


def ref_col_header(lo: float, rng: float, col: list[float]) -> list[int]:
    n, s = len(col), sorted(col)
    F = lambda v: ref_float_to_uint(lo, rng, v, 65535)  # noqa: E731
    if n >= 5:
        q = n // 4
        p0 = min(F(s[0]), 65532)
        p25 = min(max(F(s[q]), p0 + 1), 65533)
        p75 = min(max(F(s[3 * q]), p25 + 1), 65534)
        p100 = max(F(s[n - 1]), p75 + 1)
    else:
        p0 = min(F(s[0]), 65532)
        p25 = min(max(F(s[1]), p0 + 1), 65533) if n > 1 else p0 + 1
        p75 = min(max(F(s[2]), p25 + 1), 65534) if n > 2 else p25 + 1
        p100 = max(F(s[3]), p75 + 1) if n > 3 else p75 + 1
    return [p0, p25, p75, p100]


def ref_float_to_char(p0: float, p25: float, p75: float, p100: float, v: float) -> int:
    if v < p25:
        ans = int(f32(f32(f32(v - p0) / f32(p25 - p0)) * 64) + 0.5)
        return min(max(ans, 0), 64)
    if v < p75:
        ans = 64 + int(f32(f32(f32(v - p25) / f32(p75 - p25)) * 128) + 0.5)
        return min(max(ans, 64), 192)
    ans = 192 + int(f32(f32(f32(v - p75) / f32(p100 - p75)) * 63) + 0.5)
    return min(max(ans, 192), 255)


def ref_char_to_float(p0: float, p25: float, p75: float, p100: float, c: int) -> float:
    if c <= 64:
        return f32(p0 + f32(f32(p25 - p0) * c) * (1 / 64.0))
    if c <= 192:
        return f32(p25 + f32(f32(p75 - p25) * (c - 64)) * (1 / 128.0))
    return f32(p75 + f32(f32(p100 - p75) * (c - 192)) * (1 / 63.0))


def ref_compress(m: np.ndarray, method: int = C.kAutomaticMethod) -> bytes:
    rows = [[float(x) for x in r] for r in m.astype(np.float32)]
    n, k = len(rows), len(rows[0])
    fmt, lo, rng = ref_global_header(rows, method)
    out = f"{fmt} ".encode() + struct.pack("<ffii", lo, rng, n, k)
    if fmt == "CM2":
        return out + struct.pack(f"<{n * k}H", *(ref_float_to_uint(lo, rng, v, 65535) for r in rows for v in r))
    if fmt == "CM3":
        return out + struct.pack(f"<{n * k}B", *(ref_float_to_uint(lo, rng, v, 255) for r in rows for v in r))
    heads, data = [], []
    for j in range(k):
        col = [r[j] for r in rows]
        h = ref_col_header(lo, rng, col)
        p = [ref_uint16_to_float(lo, rng, q) for q in h]
        heads += h
        data += [ref_float_to_char(*p, v) for v in col]
    return out + struct.pack(f"<{4 * k}H", *heads) + bytes(data)


def matrices() -> dict[str, np.ndarray]:
    g = np.random.default_rng(7)
    feats = (g.normal(size=(40, 6)) * [8, 3, 1, 0.5, 0.1, 20] + [-30, 2, 0, 1, 5, 100]).astype(np.float32)
    feats[:, 2] = 4.25  # a constant column
    ties = g.integers(-3, 4, size=(23, 5)).astype(np.float32)
    return {
        "feats": feats, "ties": ties, "const": np.full((12, 3), -7.5, np.float32),
        "one_row": g.normal(size=(1, 9)).astype(np.float32), "two_rows": g.normal(size=(2, 4)).astype(np.float32),
        "four_rows": g.normal(size=(4, 3)).astype(np.float32), "five_rows": g.normal(size=(5, 3)).astype(np.float32),
        "nine_rows": g.normal(size=(9, 2)).astype(np.float32),
        "extremes": np.array([[1e30, -1e30], [3e-38, 0.0], [-2.5e29, 7.0]] * 4, np.float32),
        "zeros": np.zeros((10, 2), np.float32),
    }


@pytest.mark.parametrize("method", [1, 2, 3, 4, 5, 6, 7])
def test_bytes_equal_the_transcribed_kaldi_encoder(method):
    for name, m in matrices().items():
        if method in (4, 6, 7) and np.abs(m).max() > 1e4:  # fixed ranges: only meant for in-range data
            continue
        assert C.compress(m, method) == ref_compress(m, method), (name, method)


def test_golden_cm2_bytes_derived_by_hand():
    # min 0, range 3: 1/3 -> float 0.33333334 * 65535 = 21845.0007 -> float 21845 -> +0.499 -> 21845
    want = b"CM2 " + struct.pack("<ffii", 0.0, 3.0, 2, 2) + struct.pack("<4H", 0, 21845, 43690, 65535)
    assert C.compress(np.array([[0, 1], [2, 3]], np.float32)) == want


def test_format_choice_and_float64_input():
    m = matrices()
    assert C.compress(m["nine_rows"])[:3] == b"CM " and C.compress(m["four_rows"])[:4] == b"CM2 "
    assert C.compress(m["feats"].astype(np.float64)) == C.compress(m["feats"])
    with pytest.raises(C.CompressedMatrixError, match="NaN"):
        C.compress(np.array([[0.0, np.nan]] * 10))
    with pytest.raises(C.CompressedMatrixError, match="method 9"):
        C.compress(m["feats"], 9)


def test_decode_equals_transcribed_kaldi_decoder_and_kaldiio(tmp_path):
    ark = tmp_path / "m.ark"
    want: dict[str, np.ndarray] = {}
    with open(ark, "wb") as f:
        for name, m in matrices().items():
            for method in (1, 2, 3, 5):
                key = f"{name}-{method}"
                body = C.compress(m, method)
                f.write(key.encode() + b" \0B" + body)
                tok = body[:4].split(b" ")[0].decode()
                want[key] = C.decompress(tok, body[len(tok) + 1:])
                if tok == "CM":  # CharToFloat element by element
                    lo, rng, n, k = struct.unpack("<ffii", body[3:19])
                    h = struct.unpack(f"<{4 * k}H", body[19:19 + 8 * k])
                    data = body[19 + 8 * k:]
                    ref = np.array([[ref_char_to_float(*(ref_uint16_to_float(lo, rng, q) for q in h[4 * j:4 * j + 4]),
                                                       data[j * n + i]) for j in range(k)] for i in range(n)], np.float32)
                    np.testing.assert_array_equal(want[key], ref)
    ours = {k: read_matrix(f"{ark}:{off}") for k, off in _offsets(ark.read_bytes(), want)}
    theirs = dict(kaldiio.load_ark(str(ark)))
    for k, v in want.items():
        np.testing.assert_array_equal(ours[k], v)
        assert theirs[k].shape == v.shape
        # kaldiio decodes in float arithmetic (Kaldi: some products in double): a few ulps apart
        np.testing.assert_allclose(theirs[k], v, rtol=1e-6, atol=1e-6 * float(np.abs(v).max() or 1), err_msg=k)


def _offsets(buf: bytes, keys) -> list[tuple[str, int]]:
    return [(k, buf.index(k.encode() + b" \0B") + len(k) + 1) for k in keys]


def test_error_within_kaldis_quantisation_bounds():
    g = np.random.default_rng(3)
    for m in [*matrices().values(), (g.standard_t(3, size=(300, 40)) * g.uniform(0.1, 30, 40)).astype(np.float32)]:
        if np.abs(m).max() > 1e20:
            continue
        body = C.compress(m)
        tok = body[:4].split(b" ")[0].decode()
        d = C.decompress(tok, body[len(tok) + 1:])
        _, _, rng = C.global_header(m)
        q = float(rng) / 65535  # one uint16 step of the global range
        slack = 1e-6 * float(np.abs(m).max() + rng)
        # each column's min and max survive within one global quantum
        assert np.all(np.abs(d.min(0) - m.min(0)) <= q + slack) and np.all(np.abs(d.max(0) - m.max(0)) <= q + slack)
        if tok == "CM":  # every element within half its segment's step (+ one global quantum of header rounding)
            p = C.uint16_to_float(np.frombuffer(body[19:19 + 8 * m.shape[1]], "<u2").reshape(-1, 4), *C.global_header(m)[1:])
            step = np.where(m < p[:, 1], (p[:, 1] - p[:, 0]) / 64, np.where(m < p[:, 2], (p[:, 2] - p[:, 1]) / 128,
                                                                         (p[:, 3] - p[:, 2]) / 63))
            assert np.all(np.abs(d - m) <= step / 2 + q + slack)
        else:
            assert np.all(np.abs(d - m) <= q / 2 + slack)


def test_ark_scp_writer_compress_read_back(tmp_path):
    m = matrices()
    with ArkScpWriter(tmp_path / "a.ark", tmp_path / "a.scp", compress=True) as w:
        for k in ("feats", "one_row", "const"):
            w.write(k, m[k])
        w.write("empty", np.zeros((0, 3), np.float32))  # stays FM (Kaldi cannot read its empty CM back)
    raw = (tmp_path / "a.ark").read_bytes()
    assert b"feats \0BCM " in raw and b"one_row \0BCM2 " in raw and b"empty \0BFM " in raw
    ours, theirs = load_scp_matrices(tmp_path / "a.scp"), dict(kaldiio.load_scp(str(tmp_path / "a.scp")))
    for k in ("feats", "one_row", "const"):
        assert ours[k].dtype == np.float32
        np.testing.assert_allclose(ours[k], theirs[k], rtol=1e-6, atol=1e-5)
        assert np.abs(ours[k] - m[k]).max() < 0.05 * (np.abs(m[k]).max() + 1)
    with pytest.raises(TableError, match="bad.*NaN"):
        with ArkScpWriter(tmp_path / "b.ark", tmp_path / "b.scp", compress=True) as w:
            w.write("bad", np.full((10, 2), np.nan, np.float32))
    (tmp_path / "c.ark").write_bytes(raw[:raw.index(b"one_row") - 30])  # cut inside the first matrix
    with pytest.raises(TableError, match="truncated"):
        read_matrix(f"{tmp_path / 'c.ark'}:6")


def test_read_matrix_from_a_pipe(tmp_path):
    m = matrices()["feats"]
    with ArkScpWriter(tmp_path / "a.ark", tmp_path / "a.scp", compress=True) as w:
        w.write("feats", m)
    rx = load_scp_matrices(tmp_path / "a.scp")["feats"]
    (tmp_path / "one.mat").write_bytes(b"\0B" + C.compress(m))
    np.testing.assert_array_equal(read_matrix(f"cat {tmp_path / 'one.mat'} |"), rx)
