"""Paper 2's baselines: openSMILE functionals as the package computes them, RandomForest, majority."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from ser.emotion.baselines import majority, random_forest, standardise
from ser.io.tables import load_scp_matrices

ROOT = Path(__file__).resolve().parents[1]


def _speechlike(seconds: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(16000 * seconds)) / 16000
    f0 = 120 + 30 * np.sin(2 * np.pi * 0.7 * t)
    x = 0.3 * np.sin(2 * np.pi * np.cumsum(f0) / 16000) * (1 + np.sin(2 * np.pi * 3 * t)) / 2
    return (x + 0.01 * rng.normal(size=t.size)).astype(np.float32)


def test_opensmile_features_equal_the_package(tmp_path) -> None:
    import opensmile

    from ser.features.opensmile import OpenSmileExtractor

    wav = tmp_path / "a.wav"
    sf.write(wav, _speechlike(1.5, 0), 16000, subtype="PCM_16")
    ref = opensmile.Smile(feature_set=opensmile.FeatureSet.eGeMAPSv02,
                          feature_level=opensmile.FeatureLevel.Functionals).process_file(str(wav)).to_numpy()
    # through a data dir and the job program (segments cut from a longer recording, ark + scp)
    long = np.concatenate([_speechlike(0.5, 1), sf.read(wav, dtype="float32")[0], _speechlike(0.4, 2)])
    sf.write(tmp_path / "rec.wav", long, 16000, subtype="PCM_16")
    d = tmp_path / "data"
    d.mkdir()
    (d / "wav.scp").write_text(f"rec {tmp_path / 'rec.wav'}\n")
    (d / "segments").write_text("spk-a rec 0.5 2.0\n")
    (d / "utt2spk").write_text("spk-a spk\n")
    (d / "spk2utt").write_text("spk spk-a\n")
    r = subprocess.run([str(ROOT / ".venv/bin/python"), "-m", "ser.bin.compute_opensmile_feats", str(d),
                        str(tmp_path / "out")], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    got = load_scp_matrices(tmp_path / "out.scp")["spk-a"]
    assert got.shape == (1, 88)
    np.testing.assert_array_equal(got, ref.astype(np.float32))
    assert OpenSmileExtractor("IS09_emotion").dim == 384
    with pytest.raises(ValueError, match="unknown openSMILE feature set"):
        OpenSmileExtractor("IS09")


def _blobs(n: int, seed: int) -> tuple[np.ndarray, list[str]]:
    rng = np.random.default_rng(seed)
    y = [("ang", "hap", "neu", "sad")[i % 4] for i in range(n)]
    x = rng.normal(size=(n, 5)) + np.array([[{"ang": 2, "hap": 1, "neu": 0, "sad": -2}[c]] for c in y])
    return x * 100 + 7, y  # scale and offset: standardisation must cope


def test_random_forest_seeded_and_sensible() -> None:
    labels = ["ang", "hap", "neu", "sad"]
    x_tr, y_tr = _blobs(80, 0)
    x_te, y_te = _blobs(40, 1)
    a = random_forest(x_tr, y_tr, x_te, labels, seed=3, n_estimators=50)
    b = random_forest(x_tr, y_tr, x_te, labels, seed=3, n_estimators=50)
    assert a.pred == b.pred and np.array_equal(a.post, b.post)
    assert not np.array_equal(a.post, random_forest(x_tr, y_tr, x_te, labels, seed=4, n_estimators=50).post)
    np.testing.assert_allclose(a.post.sum(1), 1.0)
    assert np.mean([p == t for p, t in zip(a.pred, y_te)]) > 0.6
    # a class absent from training gets zero posterior in its labels.txt column
    keep = [i for i, c in enumerate(y_tr) if c != "hap"]
    c = random_forest(x_tr[keep], [y_tr[i] for i in keep], x_te, labels, seed=0, n_estimators=20)
    assert np.all(c.post[:, 1] == 0) and "hap" not in c.pred
    s_tr, s_te = standardise(x_tr, x_te)
    np.testing.assert_allclose(s_tr.mean(0), 0, atol=1e-9)
    np.testing.assert_allclose(s_tr.std(0), 1)


def test_majority() -> None:
    labels = ["ang", "hap", "neu", "sad"]
    m = majority(["sad", "neu", "neu", "ang", "sad", "neu"], 3, labels)
    assert m.pred == ["neu"] * 3 and m.post.tolist() == [[0, 0, 1, 0]] * 3
    assert majority(["sad", "ang"], 1, labels).pred == ["ang"]  # tie: first in labels order
    with pytest.raises(ValueError, match="not in the class list"):
        majority(["exc"], 1, labels)
