"""Paper 2's heads (ser.emotion.ds_heads), speaker folds, the fold loop's outputs and the tables."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from ser.emotion.ds_heads import (HEADS, HeadOptions, ReluLSTM, Utterances, segment_means, split_halves,
                                  train_head, utterance_posterior)
from ser.emotion.paper2 import run_system, system_options
from ser.emotion.paper2_tables import table1, write_tables
from ser.emotion.folds import write_folds
from ser.eval.scoring import score_system
from ser.io.datadir import DataDir
from ser.io.tables import ArkScpWriter

LABELS = ["ang", "hap", "neu", "sad"]


def test_relu_lstm_with_tanh_is_torch_lstm() -> None:
    torch.manual_seed(0)
    ref = torch.nn.LSTM(5, 3, batch_first=True)
    mine = ReluLSTM(5, 3, activation=torch.tanh)
    mine.load_state_dict(ref.state_dict())
    x, lengths = torch.randn(4, 7, 5), torch.tensor([7, 3, 1, 5])
    out, _ = ref(x)
    torch.testing.assert_close(mine(x, lengths), out[torch.arange(4), lengths - 1])


def test_relu_lstm_by_hand() -> None:
    """One step of the ReLU cell against numpy: c = s(i) relu(g), h = s(o) relu(c) from zero state."""
    torch.manual_seed(1)
    m = ReluLSTM(2, 2)
    x = torch.randn(1, 1, 2)
    w, b = m.weight_ih_l0.detach().numpy(), (m.bias_ih_l0 + m.bias_hh_l0).detach().numpy()
    z = w @ x[0, 0].numpy() + b
    sig = lambda v: 1 / (1 + np.exp(-v))  # noqa: E731
    c = sig(z[0:2]) * np.maximum(z[4:6], 0)
    np.testing.assert_allclose(m(x, torch.tensor([1]))[0].detach().numpy(), sig(z[6:8]) * np.maximum(c, 0),
                               rtol=1e-5)


def test_segment_means_and_utterance_posterior() -> None:
    post = torch.arange(14, dtype=torch.float64).reshape(7, 2)
    ref = np.stack([post[0:3].numpy().mean(0), post[3:6].numpy().mean(0), post[6:7].numpy().mean(0)])
    np.testing.assert_allclose(segment_means(post, 3).numpy(), ref)
    logits = torch.randn(5, 4, dtype=torch.float64)
    p = torch.softmax(logits, -1).numpy().sum(0)
    np.testing.assert_allclose(utterance_posterior(logits).numpy(), p / p.sum())


def test_split_halves_disjoint_by_speaker() -> None:
    spk = ["a", "b", "c", "a", "d", "e", "b", "e"]
    a, b = split_halves(spk, seed=3)
    assert sorted(a + b) == list(range(len(spk))) and not set(a) & set(b)
    assert not {spk[i] for i in a} & {spk[i] for i in b}
    assert len({spk[i] for i in a}) == 3 and split_halves(spk, seed=3) == (a, b)
    with pytest.raises(ValueError, match="at least 2 training speakers"):
        split_halves(["a", "a"], 0)


def _tiny(n: int, seed: int, dim: int = 6) -> Utterances:
    """Utterances whose class shifts a few feature dimensions: learnable in a few passes."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 4
    x = [torch.randn(int(torch.randint(20, 45, (1,), generator=g)), dim, generator=g) for _ in range(n)]
    for u, c in zip(x, y):
        u[:, int(c)] += 2.0
    return Utterances(x, y)


@pytest.mark.parametrize("head", HEADS)
def test_each_head_trains_and_predicts(head) -> None:
    train, valid, test = _tiny(48, 0), _tiny(12, 1), _tiny(16, 2)
    spk = [f"s{(i // 4) % 4}" for i in range(48)]   # every speaker has every class
    trained = train_head(head, train, spk, valid, 4, HeadOptions(epochs=6, learning_rate=0.01, segment_frames=5))
    post = trained.predict(test.x)
    assert post.shape == (16, 4)
    torch.testing.assert_close(post.sum(1), torch.ones(16, dtype=post.dtype))
    assert (post.argmax(1) == test.y).float().mean() > 0.5   # chance: 0.25
    parts = list(trained.parts.values())
    if head in ("ds_dense_dense", "ds_dense_lstm"):    # the two stages never share an utterance
        assert len(parts) == 2 and not set(parts[0]) & set(parts[1])
        assert sorted(parts[0] + parts[1]) == list(range(48))
        assert not {spk[i] for i in parts[0]} & {spk[i] for i in parts[1]}
    with pytest.raises(ValueError, match="unknown head"):
        train_head("dense", train, spk, valid, 4)


def _iemocap_set(root: Path, dim: int) -> tuple[Path, Path]:
    """data/<set> (10 speakers of 5 sessions, 6 turns each) and a feature dir of frames [T, dim]."""
    rng = np.random.default_rng(0)
    d = root / "set"
    d.mkdir(parents=True)
    utts = [f"Ses0{s}{g}_impro01_{g}{k:03d}" for s in range(1, 6) for g in "FM" for k in range(6)]
    lines = {n: [] for n in ("utt2spk", "utt2session", "utt2emo", "wav.scp")}
    mats = {}
    for i, u in enumerate(sorted(utts)):
        emo = LABELS[i % 4]
        lines["utt2spk"].append(f"{u} {u[:6]}")
        lines["utt2session"].append(f"{u} {u[:5]}")
        lines["utt2emo"].append(f"{u} {emo}")
        lines["wav.scp"].append(f"{u} /dev/null")
        m = rng.normal(size=(int(rng.integers(15, 30)), dim)).astype(np.float32)
        m[:, LABELS.index(emo)] += 2.0
        mats[u] = m
    for n, v in lines.items():
        (d / n).write_text("\n".join(v) + "\n")
    spk2utt = {}
    for u in sorted(utts):
        spk2utt.setdefault(u[:6], []).append(u)
    (d / "spk2utt").write_text("".join(f"{s} {' '.join(us)}\n" for s, us in spk2utt.items()))
    f = root / "feats"
    f.mkdir()
    with ArkScpWriter(f / "feats.ark", f / "feats.scp") as w:
        for u, m in mats.items():
            w.write(u, m)
    return d, f


def test_paper2_systems_write_the_layout_and_score(tmp_path) -> None:
    d, feats = _iemocap_set(tmp_path / "data", 6)
    folds = write_folds(d, "speaker")
    exp = tmp_path / "exp"
    for system in ("majority", "ds_dense", "ds_dense_lstm"):
        opts = system_options(system, HeadOptions(epochs=3, learning_rate=0.01, segment_frames=5), 10, 3, 0)
        run_system(system, feats, folds, exp / "ser" / system, opts, "set", "")
        res = score_system(exp / "ser" / system, d / "utt2emo", protocol="speaker")
        assert len(res["folds"]) == 10 and res["pooled"]["n"] == 60
    assert (exp / "ser" / "ds_dense" / "labels.txt").read_text().split() == LABELS
    maj = json.loads((exp / "ser" / "majority" / "results.json").read_text())
    assert maj["pooled"]["wa"] == pytest.approx(0.25, abs=0.1)
    assert json.loads((exp / "ser" / "ds_dense" / "results.json").read_text())["pooled"]["wa"] > 0.6
    post = (exp / "ser" / "ds_dense" / "Ses01F" / "utt2post").stat().st_mtime_ns
    run_system("ds_dense", feats, folds, exp / "ser" / "ds_dense",
               system_options("ds_dense", HeadOptions(epochs=3, learning_rate=0.01, segment_frames=5), 10, 3, 0),
               "set", "")
    assert (exp / "ser" / "ds_dense" / "Ses01F" / "utt2post").stat().st_mtime_ns == post   # up to date
    paths = write_tables(d, exp)
    assert "| this corpus | 15 | 15 | 15 | 15 | 60 |" in table1(d)
    assert "| this corpus, % | 25.0 | 25.0 | 25.0 | 25.0 | 100 |" in table1(d)
    assert "| paper 2, % | 34.4 | 6.5 | 27.0 | 32.1 | 100 |" in table1(d)   # 500 94 392 467 of 1453
    t2 = (exp / "ser" / "paper2_table2.md").read_text()
    assert "| Dense | 25.0 [34]" in t2.replace(f"{100 * maj['pooled']['wa']:.1f}", "25.0")
    assert "| ds_lstm | not run |" in t2 and (exp / "ser" / "paper2_fig3.png") in paths


def test_baselines_train_on_every_training_speaker(tmp_path) -> None:
    """Issue 24.5: RF and majority select nothing on validation, so the validation speaker trains: each fold
    trains on train + valid (no validation figures), the heads keep their validation speaker."""
    d, feats = _iemocap_set(tmp_path / "data", 6)
    folds = write_folds(d, "speaker")
    exp = tmp_path / "exp"
    for system in ("majority", "rf"):
        meta = run_system(system, feats, folds, exp / "ser" / system, system_options(
            system, HeadOptions(), 10, 3, 0), "set", "")
        for f in meta["folds"]:
            n = {p: len(DataDir.load(folds / f / p).utts) for p in ("train", "valid")}
            info = json.loads((exp / "ser" / system / f / "valid.json").read_text())
            assert n["valid"] > 0 and info["num_train_utts"] == n["train"] + n["valid"]
            assert "ua" not in info and meta["valid"][f] == {"num_valid_utts": 0}
        score_system(exp / "ser" / system, d / "utt2emo", protocol="speaker")   # meta.json still scores
    # majority: the most frequent class of train + valid (ties to the first label)
    f = meta["folds"][0]
    emo = DataDir.load(d).extra("utt2emo")
    names = [emo[u] for p in ("train", "valid") for u in DataDir.load(folds / f / p).utts]
    counts = {lab: names.count(lab) for lab in LABELS}
    best = max(LABELS, key=lambda lab: (counts[lab], -LABELS.index(lab)))
    assert set((exp / "ser" / "majority" / f / "utt2pred").read_text().split()[1::2]) == {best}
    heads = system_options("ds_dense", HeadOptions(), 10, 3, 0)
    assert "train_parts" not in heads
