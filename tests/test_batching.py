"""The batching layer (ser/io/batching.py) against element-by-element references written out
here: Kaldi's ExtractRowRangeWithPadding (clamped row indexes), the online i-vector row
``t // period`` of every frame, one row per chunk with C++ (truncating) division."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ser.io.batching import (FeatureSet, MatrixTable, ModelContext, gather_frames, ivector_per_chunk,
                             ivectors_per_frame, load_features, model_inputs, pad_edges)
from ser.io.datadir import DataDir
from ser.io.tables import ArkScpWriter


def _feature_set(lengths: dict[str, int], period: int = 10, seed: int = 0) -> FeatureSet:
    rng = np.random.default_rng(seed)
    keys = sorted(lengths)
    feats = MatrixTable.from_arrays(keys, [rng.standard_normal((lengths[k], 4)).astype(np.float32) for k in keys])
    ivecs = MatrixTable.from_arrays(keys, [rng.standard_normal(((lengths[k] + period - 1) // period, 3))
                                           .astype(np.float32) for k in keys])
    return FeatureSet(feats, ivecs, period)


def _clamp(t: int, n: int) -> int:
    return min(max(t, 0), n - 1)


def test_matrix_table_from_scp(tmp_path):
    rng = np.random.default_rng(0)
    mats = {f"u{i}": rng.standard_normal((int(rng.integers(3, 9)), 4)).astype(np.float32) for i in range(6)}
    with ArkScpWriter(tmp_path / "a.ark", tmp_path / "a.scp") as w:
        for k, m in mats.items():
            w.write(k, m)
    keys = ["u3", "u0", "u5"]
    t = MatrixTable.from_scp(tmp_path / "a.scp", keys)
    assert t.keys == keys and t.data.shape == (sum(mats[k].shape[0] for k in keys), 4)
    for k in keys:
        np.testing.assert_array_equal(t[k].numpy(), mats[k])
        assert t.num_rows(k) == mats[k].shape[0]
    with pytest.raises(ValueError, match="u9"):
        MatrixTable.from_scp(tmp_path / "a.scp", ["u9"])


def test_gather_frames_and_ivectors_per_frame_brute_force():
    fs = _feature_set({"a": 7, "b": 23, "c": 1, "d": 40}, period=10)
    utts = ["d", "a", "c", "b"]
    idx = fs.utt_index(utts)
    first = torch.tensor([-5, 3, 0, 20])
    n = 12
    x = gather_frames(fs.feats, idx, first, n)
    iv = ivectors_per_frame(fs, idx, first, n)
    assert x.shape == (4, n, 4) and iv.shape == (4, n, 3)
    for b, u in enumerate(utts):
        T = fs.num_frames(u)
        for i in range(n):
            t = _clamp(int(first[b]) + i, T)
            assert torch.equal(x[b, i], fs.feats[u][t])
            assert torch.equal(iv[b, i], fs.ivectors[u][_clamp(t // 10, fs.ivectors.num_rows(u))])
    # a scalar first frame means the same for every sequence
    assert torch.equal(gather_frames(fs.feats, idx, 2, 5), gather_frames(fs.feats, idx, torch.full((4,), 2), 5))


def test_ivector_per_chunk_truncates_and_clamps():
    fs = _feature_set({"a": 35, "b": 8}, period=10)
    idx = fs.utt_index(["a", "a", "a", "a", "b"])
    frame = torch.tensor([-15, -9, 19, 300, 7])
    got = ivector_per_chunk(fs, idx, frame)
    # C++: -15 / 10 = -1 -> clamped to 0; -9 / 10 = 0; 19 / 10 = 1; 300 / 10 = 30 -> last row (3)
    want_rows = [0, 0, 1, 3, 0]
    for b, (u, r) in enumerate(zip(["a", "a", "a", "a", "b"], want_rows)):
        assert torch.equal(got[b], fs.ivectors[u][r])


def test_pad_edges():
    x = torch.arange(12.0).view(1, 4, 3)
    p = pad_edges(x, 2, 1)
    ref = np.concatenate([np.repeat(x[:, :1].numpy(), 2, 1), x.numpy(), x[:, -1:].numpy()], axis=1)
    np.testing.assert_array_equal(p.numpy(), ref)
    with pytest.raises(ValueError):
        pad_edges(x, -1, 0)


def test_model_inputs_whole_utterances_and_chunks():
    fs = _feature_set({"a": 10, "b": 17, "c": 30})
    ctx = ModelContext(left_context=4, right_context=5, frame_subsampling_factor=3)
    x, iv = model_inputs(fs, ["b", "a", "c"], ctx)
    assert x.shape == (3, 3 * 10 + 9, 4) and iv.shape == (3, 39, 3)  # ceil(30/3) output frames
    for b, u in enumerate(["b", "a", "c"]):
        feats = fs.feats[u]
        T = feats.shape[0]
        # the utterance padded at both edges, as a decoder pads it (then its last frame repeated)
        padded = pad_edges(feats[None], 4, 5)[0]
        assert torch.equal(x[b, : T + 9], padded)
        assert all(torch.equal(x[b, i], feats[-1]) for i in range(T + 9, 39))
        rows = torch.from_numpy(np.minimum(np.arange(T) // 10, fs.ivectors.num_rows(u) - 1))
        assert torch.equal(iv[b, : T + 9], pad_edges(fs.ivectors[u][rows][None], 4, 5)[0])
    # chunks: output frame k at input first + 3k; one i-vector per chunk (default: the middle)
    first = torch.tensor([3, 9])
    x, iv = model_inputs(fs, ["c", "b"], ctx, first_frame=first, num_output_frames=2, ivector_mode="chunk")
    assert x.shape == (2, 6 + 9, 4) and iv.shape == (2, 3)
    for b, u in enumerate(["c", "b"]):
        for i in range(15):
            assert torch.equal(x[b, i], fs.feats[u][_clamp(int(first[b]) - 4 + i, fs.num_frames(u))])
    assert torch.equal(iv[0], fs.ivectors["c"][(3 + 3) // 10]) and torch.equal(iv[1], fs.ivectors["b"][(9 + 3) // 10])
    _, iv = model_inputs(fs, ["c"], ctx, first_frame=20, num_output_frames=2, ivector_mode="chunk",
                         ivector_frame=torch.tensor([25]))
    assert torch.equal(iv[0], fs.ivectors["c"][2])
    with pytest.raises(ValueError, match="ivector_mode"):
        model_inputs(fs, ["a"], ctx, ivector_mode="utterance")
    with pytest.raises(ValueError, match="'zz'"):
        model_inputs(fs, ["zz"], ctx)
    no_iv = FeatureSet(fs.feats, None)
    assert model_inputs(no_iv, ["a"], ctx)[1] is None


def test_load_features(tmp_path, caplog):
    rng = np.random.default_rng(1)
    lengths = {"s1-u1": 50, "s1-u2": 31, "s2-u1": 64, "s2-u2": 12}
    data, ivd = tmp_path / "data", tmp_path / "iv"
    DataDir(utt2spk={u: u.split("-")[0] for u in lengths}, extras={"utt2uniq": {u: u for u in lengths}}).write(data)
    feats = {u: rng.standard_normal((n, 4)).astype(np.float32) for u, n in lengths.items()}
    with ArkScpWriter(data / "feats.ark", data / "feats.scp") as w:
        for u in sorted(feats):
            w.write(u, feats[u])
    ivd.mkdir()
    (ivd / "ivector_period").write_text("5\n")
    # s2-u1: an i-vector matrix for 10 frames instead of 64 (off by more than the tolerance);
    # s2-u2: none at all
    ivec_rows = {"s1-u1": 10, "s1-u2": 7, "s2-u1": 2}
    with ArkScpWriter(ivd / "ivector_online.ark", ivd / "ivector_online.scp") as w:
        for u, r in sorted(ivec_rows.items()):
            w.write(u, rng.standard_normal((r, 3)).astype(np.float32))
    fs = load_features(data, ivd, length_tolerance=20)
    assert fs.utts == ["s1-u1", "s1-u2"] and fs.ivector_period == 5
    np.testing.assert_array_equal(fs.feats["s1-u2"].numpy(), feats["s1-u2"])
    assert fs.ivectors.num_rows("s1-u1") == 10 and fs.utt2uniq["s1-u1"] == "s1-u1"
    assert "no i-vectors" in caplog.text and "differ by more than 20" in caplog.text
    only = load_features(data, utts=["s2-u2", "s1-u1"])
    assert only.utts == ["s2-u2", "s1-u1"] and only.ivectors is None
