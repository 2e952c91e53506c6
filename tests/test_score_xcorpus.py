"""The cross-corpus test (ser/bin/score_xcorpus.py): ser-infer's output on another corpus scored as a
one-fold system, and its row in exp/results.md.  Metrics against scikit-learn."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score

from ser.bin import score_ser, score_xcorpus
from ser.eval.scoring import ScoringError

LABELS = ["ang", "hap", "neu", "sad"]
N = 40


def _table(path: Path, rows: dict[str, str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{k} {v}\n" for k, v in sorted(rows.items())))


@pytest.fixture
def xexp(tmp_path: Path) -> dict:
    """Corpus B's reference, an export's labels.txt and model.json, ser-infer's kaldi output on B, and
    tdnn_l12 scored on corpus A with the same utterance ids and labels (IEMOCAP_B reuses IEMOCAP's naming)."""
    rng = np.random.default_rng(0)
    utts = [f"Ses01F-Ses01F_impro01_{'FM'[i % 2]}{i:03d}" for i in range(N)]
    ref = {u: LABELS[i % 4] for i, u in enumerate(utts)}
    post = rng.dirichlet(np.ones(4), N) * 0.6 + 0.4 * np.eye(4)[[i % 4 for i in range(N)]] * (rng.random((N, 1)) < 0.5)
    post /= post.sum(1, keepdims=True)
    pred = {u: LABELS[int(np.argmax(p))] for u, p in zip(utts, post)}
    data_b, data_a = tmp_path / "data/xcorpus/iemocap_4cls_exc", tmp_path / "data/iemocap_4cls_exc"
    _table(data_b / "utt2emo", ref)
    _table(data_a / "utt2emo", ref)
    export = tmp_path / "exp/ser/tdnn_l12_uttivec/export"
    export.mkdir(parents=True)
    (export / "labels.txt").write_text("\n".join(LABELS) + "\n")
    cv = {"mean": {"ua": 0.433, "wa": 0.39, "macro_f1": 0.33}, "std": {"ua": 0.057, "wa": 0.07, "macro_f1": 0.08},
          "pooled": {"n": 554, "ua": 0.405, "wa": 0.39, "macro_f1": 0.36, "ua_ci95": [0.370, 0.439]},
          "folds": ["Ses01", "Ses02", "Ses03", "Ses04", "Ses05"]}
    (export / "model.json").write_text(json.dumps({"system": "tdnn_l12_uttivec", "set": "iemocap_4cls_exc",
                                                   "protocol": "session", "description": "per-utterance i-vectors",
                                                   "labels": LABELS, "cross_validation": cv}))
    system = tmp_path / "exp/ser/tdnn_l12_uttivec_xcorpus"
    infer = system / "IEMOCAP_B/infer"
    _table(infer / "utt2emo", pred)
    _table(infer / "utt2post", {u: " ".join(f"{x:.6f}" for x in p) for u, p in zip(utts, post)})
    ref_sys = tmp_path / "exp/ser/tdnn_l12"
    (ref_sys / "Ses01").mkdir(parents=True)
    (ref_sys / "labels.txt").write_text("\n".join(LABELS) + "\n")
    _table(ref_sys / "Ses01/utt2pred", pred)
    _table(ref_sys / "Ses01/utt2post", {u: "0.25 0.25 0.25 0.25" for u in utts})
    return {"root": tmp_path, "ref": ref, "pred": pred, "export": export, "infer": infer, "data": data_b,
            "data_a": data_a, "system": system, "ref_sys": ref_sys}


def _argv(x: dict) -> list[str]:
    return ["--train-corpus", "IEMOCAP_full_release", "--test-corpus", "IEMOCAP_B",
            *(str(x[k]) for k in ("export", "infer", "data", "system"))]


def test_scores_and_writes_the_row(xexp, capsys, monkeypatch):
    monkeypatch.setattr("ser.eval.scoring.write_confusion_png", lambda path, *a, **k: path.write_bytes(b"png"))
    assert score_ser.main(["--protocol", "session", str(xexp["data_a"]), str(xexp["ref_sys"])]) == 0
    assert score_xcorpus.main(_argv(xexp)) == 0
    out = capsys.readouterr().out
    assert "tdnn_l12_uttivec_xcorpus: trained on IEMOCAP_full_release, tested on IEMOCAP_B (40 utterances)" in out
    system = xexp["system"]
    res = json.loads((system / "results.json").read_text())
    utts = sorted(xexp["ref"])
    y, h = [xexp["ref"][u] for u in utts], [xexp["pred"][u] for u in utts]
    assert res["pooled"]["ua"] == pytest.approx(balanced_accuracy_score(y, h))
    assert res["pooled"]["wa"] == pytest.approx(accuracy_score(y, h))
    assert res["pooled"]["macro_f1"] == pytest.approx(f1_score(y, h, average="macro"))
    assert res["folds"][0]["fold"] == "IEMOCAP_B" and res["reference"].endswith("data/xcorpus/iemocap_4cls_exc/utt2emo")
    assert (system / "IEMOCAP_B/utt2pred").read_text() == (xexp["infer"] / "utt2emo").read_text()
    assert "Within IEMOCAP_full_release (session cross-validation, 5 folds) the same system has UA 43.3 ± 5.7, " \
           "pooled 40.5 [37.0, 43.9]" in (system / "results.md").read_text()
    rows = {c[0]: c for c in ([x.strip() for x in line.strip("|").split("|")]
                              for line in (xexp["root"] / "exp/results.md").read_text().splitlines()
                              if line.startswith("| tdnn"))}
    row = rows["tdnn_l12_uttivec_xcorpus"]
    assert row[1:4] == ["iemocap_4cls_exc", "trained on IEMOCAP_full_release, tested on IEMOCAP_B", "1"]
    assert row[7] == f"{100 * res['pooled']['ua']:.1f}"
    lo, hi = res["pooled"]["ua_ci95"]
    assert row[11] == f"[{100 * lo:.1f}, {100 * hi:.1f}]"
    # the same ids and labels on corpus A are other recordings: never paired with tdnn_l12
    assert row[12] == "n/a: tested on another corpus" and rows["tdnn_l12"][12] == "(reference)"
    assert res["test_corpus"] == "IEMOCAP_B"


def test_every_utterance_needs_a_decision(xexp):
    lines = (xexp["infer"] / "utt2emo").read_text().splitlines()
    (xexp["infer"] / "utt2emo").write_text("\n".join(lines[1:]) + "\n")
    first = lines[0].split()[0]
    with pytest.raises(ScoringError, match=f"utt2emo: utterance {first} of .*utt2emo has no decision"):
        score_xcorpus.main(_argv(xexp))
    (xexp["infer"] / "utt2emo").write_text("\n".join(lines + ["Ses09F-x ang"]) + "\n")
    with pytest.raises(ScoringError, match="utterance Ses09F-x is not in"):
        score_xcorpus.main(_argv(xexp))
    assert not (xexp["system"] / "results.json").exists()


def test_overlap_with_the_training_set_is_measured_and_printed(xexp, capsys, monkeypatch):
    """Issue 24.7: the description states the sentences and speaker names found in both sets, not an assumption."""
    monkeypatch.setattr("ser.eval.scoring.write_confusion_png", lambda path, *a, **k: path.write_bytes(b"png"))
    utts = sorted(xexp["ref"])
    a_utts = [u.replace("Ses01F-", "Ses03M-") for u in utts[:5]] + ["Ses01F-shared_F000"]
    _table(xexp["data_a"] / "text", {**{u: f"a training sentence number {i}" for i, u in enumerate(a_utts)},
                                     "Ses01F-shared_F000": "The kettle is ON the stove."})
    _table(xexp["data_a"] / "utt2spk", {**{u: "Ses03M" for u in a_utts[:5]}, "Ses01F-shared_F000": "Ses01F"})
    # B: two turns read A's sentence (punctuation and case aside); speakers Ses01F (a name A uses) and Ses02M
    _table(xexp["data"] / "text", {u: ("the kettle is on the stove" if i < 2 else f"b sentence {i}")
                                   for i, u in enumerate(utts)})
    _table(xexp["data"] / "utt2spk", {u: ("Ses01F" if i % 2 else "Ses02M") for i, u in enumerate(utts)})
    assert score_xcorpus.main(["--train-data", str(xexp["data_a"]), *_argv(xexp)]) == 0
    out = capsys.readouterr().out
    assert f"2 of its {N} turns read a sentence of the training transcripts (1 distinct" in out
    assert "1 of its 2 speaker names are also training speaker names (Ses01F:" in out
    meta = json.loads((xexp["system"] / "meta.json").read_text())
    o = meta["overlap"]
    assert (o["test_turns_with_a_training_sentence"], o["shared_sentences"], o["shared_speaker_names"]) == \
        (2, 1, ["Ses01F"])
    assert "2 of its 40 turns" in meta["description"] and "shares no speaker" not in meta["description"]
    # disjoint sets: 0 and 0, said as found
    _table(xexp["data"] / "text", {u: f"b sentence {i}" for i, u in enumerate(utts)})
    _table(xexp["data"] / "utt2spk", {u: "Ses09F" for u in utts})
    assert score_xcorpus.main(["--train-data", str(xexp["data_a"]), *_argv(xexp)]) == 0
    assert f"0 of its {N} turns read a sentence" in capsys.readouterr().out
    assert json.loads((xexp["system"] / "meta.json").read_text())["overlap"]["shared_speaker_names"] == []
    (xexp["data_a"] / "text").unlink()   # not compared, and said so
    assert score_xcorpus.main(["--train-data", str(xexp["data_a"]), *_argv(xexp)]) == 0
    assert f"sentences not compared (no {xexp['data_a'] / 'text'})" in capsys.readouterr().out
    (xexp["data_a"] / "utt2spk").unlink()
    with pytest.raises(ScoringError, match="utt2spk"):
        score_xcorpus.main(["--train-data", str(xexp["data_a"]), *_argv(xexp)])
