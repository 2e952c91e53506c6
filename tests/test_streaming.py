"""Streamed feature reading (issue 22, points 3 and 4): :class:`LazyMatrixTable` gives exactly the matrices
:meth:`MatrixTable.from_scp` reads (uncompressed, double and Kaldi-compressed arks, and the byte blobs the
egs shards store); a lazy feature set gives the same network inputs; the CTC trainer's streamed, prefetched
minibatches are the in-memory path's tensors, and a few training steps end in bit-identical parameters."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

from ser.io.batching import (FeatureSet, LazyMatrixTable, MatrixTable, ModelContext, load_features, matrix_blob,
                             model_inputs)
from ser.io.datadir import DataDir
from ser.io.prefetch import prefetch
from ser.io.tables import ArkScpWriter, TableError, encode_matrix


def _mats(n: int, dim: int, seed: int, dtype=np.float32) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    # a few short ones: <= 8 rows are CM2 under --compress (kAutomaticMethod), longer ones CM
    return {f"u{i:02d}": (rng.standard_normal((int(rng.integers(2, 40)), dim)) * 3).astype(dtype) for i in range(n)}


def _write(tmp, name: str, mats: dict, compress: bool = False):
    with ArkScpWriter(tmp / f"{name}.ark", tmp / f"{name}.scp", compress=compress) as w:
        for k, m in mats.items():
            w.write(k, m)
    return tmp / f"{name}.scp"


@pytest.mark.parametrize("compress,dtype", [(False, np.float32), (False, np.float64), (True, np.float32)])
def test_lazy_table_equals_from_scp(tmp_path, compress, dtype):
    scp = _write(tmp_path, "a", _mats(12, 5, 0, dtype), compress)
    keys = ["u07", "u00", "u11", "u03"]
    ref = MatrixTable.from_scp(scp, keys)
    lazy = LazyMatrixTable.from_scp(scp, keys)
    assert lazy.keys == keys and lazy.dim == 5 and torch.equal(lazy.lengths, ref.lengths)
    for k in reversed(keys):  # any order, any number of times
        assert torch.equal(lazy[k], ref[k]) and lazy[k].dtype == torch.float32
        assert lazy.num_rows(k) == ref.num_rows(k) and k in lazy
    sub = lazy.subset(["u03", "u07"])
    assert torch.equal(sub["u03"], ref["u03"]) and sub.num_rows("u07") == ref.num_rows("u07")
    with pytest.raises(ValueError, match="u99"):
        LazyMatrixTable.from_scp(scp, ["u99"])


def test_lazy_table_other_rxspecifiers_fall_back_and_nonfinite_is_named(tmp_path):
    mats = _mats(3, 4, 1)
    scp = _write(tmp_path, "a", mats)
    one = torch.arange(1, 9, dtype=torch.float32).view(2, 4)
    (tmp_path / "one.mat").write_bytes(encode_matrix(one.numpy()))
    with open(scp, "a") as f:  # a single-matrix file (no offset) and a pipe: read with read_matrix
        f.write(f"file1 {tmp_path / 'one.mat'}\npipe1 cat {tmp_path / 'one.mat'} |\n")
    lazy = LazyMatrixTable.from_scp(scp)
    assert set(lazy.fallback.values()) == {str(tmp_path / "one.mat"), f"cat {tmp_path / 'one.mat'} |"}
    assert torch.equal(lazy["file1"], one) and torch.equal(lazy["pipe1"], one) and lazy.num_rows("pipe1") == 2
    assert torch.equal(lazy["u01"], torch.from_numpy(mats["u01"]))
    bad = {"ok": np.ones((3, 2), np.float32), "bad": np.array([[1, np.nan], [0, 0]], np.float32)}
    lazy = LazyMatrixTable.from_scp(_write(tmp_path, "b", bad))
    with pytest.raises(TableError, match="utterance bad.*non-finite"):
        lazy["bad"]


@pytest.mark.parametrize("compress", [False, True])
def test_matrix_blob_round_trip_is_exact(tmp_path, compress):
    scp = _write(tmp_path, "a", _mats(9, 3, 2), compress)
    ref = MatrixTable.from_scp(scp)
    for table in (LazyMatrixTable.from_scp(scp), ref):  # stored bytes as they are; in-memory floats as FM
        blob, offsets = matrix_blob(table, ref.keys[::-1])
        back = LazyMatrixTable.from_blob(ref.keys[::-1], blob, offsets, "blob")
        for k in ref.keys:
            assert torch.equal(back[k], ref[k])
    lazy = LazyMatrixTable.from_scp(scp)
    blob, offsets = matrix_blob(lazy, lazy.keys)
    # the compressed bytes are kept as they are, not decoded and written as floats
    assert int(offsets[-1]) == int(lazy.size.sum())
    with pytest.raises(TableError, match="blob"):
        LazyMatrixTable.from_blob(lazy.keys, blob[1:], offsets, "blob")


def test_lazy_feature_set_gives_the_same_model_inputs(tmp_path):
    rng = np.random.default_rng(3)
    lengths = {"s1-a": 50, "s1-b": 31, "s2-a": 64, "s2-b": 12}
    data, ivd = tmp_path / "data", tmp_path / "iv"
    DataDir(utt2spk={u: u.split("-")[0] for u in lengths}).write(data)
    with ArkScpWriter(data / "feats.ark", data / "feats.scp", compress=True) as w:
        for u in sorted(lengths):
            w.write(u, rng.standard_normal((lengths[u], 4)).astype(np.float32))
    ivd.mkdir()
    with ArkScpWriter(ivd / "ivector_online.ark", ivd / "ivector_online.scp") as w:
        for u in sorted(lengths):
            w.write(u, rng.standard_normal(((lengths[u] + 9) // 10, 3)).astype(np.float32))
    mem, lazy = load_features(data, ivd), load_features(data, ivd, lazy=True)
    assert isinstance(lazy.feats, LazyMatrixTable) and lazy.utts == mem.utts
    ctx = ModelContext(left_context=5, right_context=4, frame_subsampling_factor=3)
    utts = ["s2-a", "s1-b", "s2-a", "s2-b"]
    for kw in ({}, {"first_frame": torch.tensor([3, 0, 30, 2]), "num_output_frames": 5, "ivector_mode": "chunk"}):
        for a, b in zip(model_inputs(mem, utts, ctx, **kw), model_inputs(lazy, utts, ctx, **kw)):
            assert torch.equal(a, b)
    # row indexes into the lazy set work too (the egs pass them)
    idx = lazy.utt_index(utts)
    assert torch.equal(model_inputs(mem, idx, ctx)[0], model_inputs(lazy, idx, ctx)[0])


def test_prefetch_keeps_order_propagates_errors_and_stops_on_break():
    assert list(prefetch(iter(range(50)), depth=3)) == list(range(50))
    assert list(prefetch(iter(range(5)), depth=0)) == list(range(5))

    def failing():
        yield 1
        raise KeyError("bad utterance")
    with pytest.raises(KeyError, match="bad utterance"):
        list(prefetch(failing(), 2))
    made = []

    def endless():
        i = 0
        while True:
            made.append(i)
            yield i
            i += 1
    before = threading.active_count()
    for x in prefetch(endless(), 2):
        if x == 3:
            break
    assert threading.active_count() == before  # the thread ended with the generator
    assert len(made) <= 3 + 1 + 2 + 1  # bounded read-ahead: the queue, the one being made


# ------------------------------------------------------------------------------------------------
# the CTC trainer's data
# ------------------------------------------------------------------------------------------------
def _ctc_data_dir(tmp_path, n: int = 14):
    from ser.ctc.text import encode
    rng = np.random.default_rng(4)
    means = rng.normal(size=(28, 6)).astype(np.float32) * 2
    texts, feats = {}, {}
    for i in range(n):
        text = "".join(rng.choice(list("abcde ")) for _ in range(rng.integers(2, 6))).strip() or "a"
        lab = encode(text)
        f = np.concatenate([np.repeat(means[c][None], 3, 0) for c in lab] + [np.zeros((2, 6), np.float32)])
        u = f"spk{i % 3}-utt{i:02d}"
        texts[u], feats[u] = text, f + rng.normal(scale=0.3, size=f.shape).astype(np.float32)
    d = tmp_path / "data"
    DataDir(utt2spk={u: u.split("-")[0] for u in texts}, text=texts).write(d)
    with ArkScpWriter(d / "feats.ark", d / "feats.scp", compress=True) as w:
        for u in sorted(feats):
            w.write(u, feats[u])
    return d


def test_ctc_streamed_batches_and_training_equal_in_memory(tmp_path):
    from ser.nnet.deepspeech import DeepSpeechConfig, DeepSpeechModel
    from ser.train.ctc_data import CtcBatches, CtcData, load_ctc_data
    from ser.train.ctc_trainer import CtcTrainer, CtcTrainerConfig

    d = _ctc_data_dir(tmp_path)
    lazy = load_ctc_data(d)
    assert isinstance(lazy.feats, LazyMatrixTable)
    mem = CtcData(lazy.keys, MatrixTable.from_scp(d / "feats.scp", lazy.keys), lazy.labels, lazy.texts,
                  lazy.skipped)
    got = list(CtcBatches(lazy, 50).iterate())
    want = list(CtcBatches(mem, 50, prefetch_depth=0).iterate())
    assert len(got) == len(want) > 3
    for a, b in zip(got, want):
        assert a.keys == b.keys
        for f in ("feats", "lengths", "targets", "target_lengths"):
            assert torch.equal(getattr(a, f), getattr(b, f)), f
    assert [m.keys for m in CtcBatches(lazy, 50).iterate(2)] == [m.keys for m in want[2:]]

    cfg = DeepSpeechConfig(feat_dim=6, context=1, hidden_dim=16, cell_dim=12, dropout=0.05)
    params = []
    for name, data in (("lazy", lazy), ("mem", mem)):
        torch.manual_seed(0)
        t = CtcTrainer(DeepSpeechModel(cfg, generator=torch.Generator().manual_seed(0)),
                       CtcTrainerConfig(num_epochs=2.0, learning_rate=0.01, max_frames=50, valid_interval=100,
                                        print_interval=100), tmp_path / name)
        t.train(data, max_steps=5)
        params.append(t.model.state_dict())
    for k in params[0]:
        assert torch.equal(params[0][k], params[1][k]), k


# ------------------------------------------------------------------------------------------------
# egs shards keep the arks' compressed bytes
# ------------------------------------------------------------------------------------------------
def test_shard_features_are_the_arks_compressed_bytes(tmp_path):
    from ser.chain.graph import ChainGraph
    from ser.train.egs_shards import EgsShard

    rng = np.random.default_rng(5)
    lengths = {"a": 40, "b": 7, "c": 25}  # b: <= 8 rows, CM2
    data, ivd = tmp_path / "data", tmp_path / "iv"
    DataDir(utt2spk={u: u for u in lengths}).write(data)
    with ArkScpWriter(data / "feats.ark", data / "feats.scp", compress=True) as w:
        for u in sorted(lengths):
            w.write(u, rng.standard_normal((lengths[u], 13)).astype(np.float32) * 4)
    ivd.mkdir()
    with ArkScpWriter(ivd / "ivector_online.ark", ivd / "ivector_online.scp") as w:
        for u in sorted(lengths):
            w.write(u, rng.standard_normal(((lengths[u] + 9) // 10, 3)).astype(np.float32))
    fs = load_features(data, ivd, lazy=True)
    keys = ["c", "a"]  # b has no example: not stored
    idx = fs.utt_index(keys)
    graphs = [ChainGraph(2, torch.tensor([0]), torch.tensor([1]), torch.tensor([i]), torch.tensor([-0.5]),
                         torch.tensor([0.0, -1e30]), torch.tensor([-1e30, 0.0])) for i in range(2)]
    n = fs.feats.lengths[idx]
    EgsShard("e2e", fs, idx, torch.zeros(2, dtype=torch.int64), n, (n + 2) // 3, torch.tensor([3, 4]), graphs,
             int(n.sum()), {}, 3, [], 4, 0, 1).save(tmp_path / "egs.1.pt")
    sh = EgsShard.load(tmp_path / "egs.1.pt")
    ark = MatrixTable.from_scp(data / "feats.scp")
    ivs = MatrixTable.from_scp(ivd / "ivector_online.scp")
    assert sorted(sh.fs.feats.keys) == ["a", "c"] and isinstance(sh.fs.feats, LazyMatrixTable)
    for u in sh.fs.feats.keys:
        assert torch.equal(sh.fs.feats[u], ark[u]) and torch.equal(sh.fs.ivectors[u], ivs[u])
    # the stored bytes are the compressed ones (one byte per value plus headers), not float32
    stored = int(sh.fs.feats.size.sum())
    assert stored == int(fs.feats.subset(["a", "c"]).size.sum()) < 65 * 13 * 4 / 3
    assert torch.equal(sh.graphs[1].pdf, graphs[1].pdf) and torch.equal(sh.ivector_frame, torch.tensor([3, 4]))
    ctx = ModelContext(left_context=4, right_context=2)
    got = model_inputs(sh.fs, sh.utt_idx, ctx, ivector_mode="chunk", ivector_frame=sh.ivector_frame)
    want = model_inputs(FeatureSet(ark, ivs, 10), keys, ctx, ivector_mode="chunk", ivector_frame=sh.ivector_frame)
    assert all(torch.equal(a, b) for a, b in zip(got, want))


def test_bottleneck_features_streamed_equal_in_memory(tmp_path):
    """compute_bottleneck_feats reads its part per batch: the ark it writes holds the layer outputs of the
    features read whole (the old path, layer_outputs over a MatrixTable), bit for bit."""
    from ser.bin.compute_bottleneck_feats import layer_outputs, main
    from ser.nnet.deepspeech import DeepSpeechConfig, DeepSpeechModel
    from ser.nnet.model_io import save_deepspeech_model

    d = _ctc_data_dir(tmp_path, n=9)
    model = DeepSpeechModel(DeepSpeechConfig(feat_dim=6, context=1, hidden_dim=16, cell_dim=12),
                            generator=torch.Generator().manual_seed(1))
    save_deepspeech_model(tmp_path / "final.pt", model)
    assert main(["--layer", "layer_2", str(tmp_path / "final.pt"), str(d), str(tmp_path / "bnf")]) == 0
    got = MatrixTable.from_scp(tmp_path / "bnf.scp")
    want = dict(layer_outputs(model, MatrixTable.from_scp(d / "feats.scp"), "layer_2", torch.device("cpu")))
    assert sorted(got.keys) == sorted(want)
    for k, m in want.items():
        assert np.array_equal(got[k].numpy(), m), k


def test_paper2_heads_read_lazily_give_the_same_posteriors(tmp_path):
    """Stage 9 reads each fold's utterances from the feature ark when a head uses them: the posteriors
    are those of the whole set read into memory first (the old path), to the byte."""
    from ser.emotion.ds_heads import HeadOptions
    from ser.emotion.folds import read_fold_names, write_folds
    from ser.emotion.paper2 import run_fold, set_labels, system_options

    rng = np.random.default_rng(6)
    d = tmp_path / "set"
    utts = sorted(f"Ses0{s}{g}_impro01_{g}{k:03d}" for s in range(1, 4) for g in "FM" for k in range(4))
    labels4 = ["ang", "hap", "neu", "sad"]
    emo = {u: labels4[i % 4] for i, u in enumerate(utts)}
    DataDir(utt2spk={u: u[:6] for u in utts}, extras={"utt2emo": emo, "utt2session": {u: u[:5] for u in utts}},
            wav={u: "/dev/null" for u in utts}).write(d)
    feats = tmp_path / "feats"
    feats.mkdir()
    with ArkScpWriter(feats / "feats.ark", feats / "feats.scp") as w:
        for u in utts:
            m = rng.normal(size=(int(rng.integers(10, 20)), 5)).astype(np.float32)
            m[:, labels4.index(emo[u])] += 2.0
            w.write(u, m)
    folds = write_folds(d, "speaker")
    fold = read_fold_names(folds)[0]
    labels = set_labels(folds)
    opts = system_options("ds_dense_lstm", HeadOptions(epochs=2, learning_rate=0.01, segment_frames=4), 10, 3, 0)
    posts = []
    for name, table in (("lazy", LazyMatrixTable.from_scp(feats / "feats.scp", utts)),
                        ("mem", MatrixTable.from_scp(feats / "feats.scp", utts))):
        run_fold("ds_dense_lstm", folds / fold, table, labels, tmp_path / name, opts)
        posts.append((tmp_path / name / "utt2post").read_text())
    assert posts[0] == posts[1] and posts[0].count("\n") > 0


def test_emotion_load_parts_is_lazy_and_equal(tmp_path):
    """Stage 7's fold parts (two data dirs, one ark each) in one lazy set: the matrices and network inputs
    of reading both whole."""
    from ser.emotion.frames import load_parts

    rng = np.random.default_rng(7)
    dirs, want = [], {}
    ivd = tmp_path / "iv"
    ivd.mkdir()
    with ArkScpWriter(ivd / "ivector_online.ark", ivd / "ivector_online.scp") as iw:
        for part, utts in (("train", ["s1-a", "s1-b", "s2-a"]), ("valid", ["s3-a", "s3-b"])):
            d = tmp_path / part
            DataDir(utt2spk={u: u.split("-")[0] for u in utts}).write(d)
            with ArkScpWriter(d / "feats.ark", d / "feats.scp", compress=True) as w:
                for u in utts:
                    want[u] = rng.standard_normal((int(rng.integers(20, 40)), 4)).astype(np.float32)
                    w.write(u, want[u])
                    iw.write(u, rng.standard_normal(((len(want[u]) + 9) // 10, 2)).astype(np.float32))
            dirs.append(d)
    fs = load_parts(dirs, ivd)
    assert isinstance(fs.feats, LazyMatrixTable) and fs.utts == list(want)
    ref = FeatureSet(MatrixTable.from_arrays(list(want), [MatrixTable.from_scp(d / "feats.scp")[u] for d in dirs
                                                         for u in DataDir.load(d).utts]),
                     MatrixTable.from_scp(ivd / "ivector_online.scp", list(want)), 10)
    ctx = ModelContext(left_context=3, right_context=3)
    idx = torch.tensor([4, 0, 2, 4])
    for a, b in zip(model_inputs(fs, idx, ctx, torch.tensor([0, 5, 9, 3]), 4),
                    model_inputs(ref, idx, ctx, torch.tensor([0, 5, 9, 3]), 4)):
        assert torch.equal(a, b)
    with pytest.raises(ValueError, match="more than one"):
        LazyMatrixTable.concat([fs.feats, fs.feats])
