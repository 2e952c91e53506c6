"""ser.eval.scoring end to end on fake system dirs, values against scikit-learn; every validation error."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
from sklearn import metrics as skm

from ser.eval.classes import shown_labels
from ser.eval.scoring import ScoringError, score_system

LABELS = ["ang", "hap", "neu", "sad"]


def write_system(root: Path, name: str, folds: dict[str, int], seed: int = 0, acc: float = 0.6,
                 meta: dict | None = None, ref: dict[str, str] | None = None,
                 set_name: str = "iemocap_4cls_exc") -> tuple[Path, dict[str, str]]:
    """exp/ser/<name> with random posteriors and data/<set_name>/utt2emo, written line by line;
    returns (system dir, reference utt2emo).

    Utterance ids are <fold>-u<i>; the reference labels are random (or ``ref``); the decision is
    the argmax of the posteriors, which favour the right class with probability ``acc``.
    """
    rng = np.random.default_rng(seed)
    d = root / "exp" / "ser" / name
    d.mkdir(parents=True)
    (d / "labels.txt").write_text("".join(f"{x}\n" for x in LABELS))
    reference = dict(ref or {})
    for fold, n in folds.items():
        (d / fold / "log").mkdir(parents=True)
        pred, post = [], []
        for i in range(n):
            utt = f"{fold}-u{i:03d}"
            true = reference.setdefault(utt, LABELS[rng.integers(4)])
            logits = rng.normal(size=4)
            if rng.random() < acc:
                logits[LABELS.index(true)] += 4
            p = np.exp(logits) / np.exp(logits).sum()
            pred.append(f"{utt} {LABELS[int(np.argmax(p))]}\n")
            post.append(f"{utt} " + " ".join(f"{x:.6f}" for x in p) + "\n")
        (d / fold / "utt2pred").write_text("".join(pred))
        (d / fold / "utt2post").write_text("".join(post))
    if meta is not None:
        (d / "meta.json").write_text(json.dumps(meta))
    data = root / "data" / set_name
    data.mkdir(parents=True, exist_ok=True)
    (data / "utt2emo").write_text("".join(f"{u} {e}\n" for u, e in sorted(reference.items())))
    # four speakers a fold (the bootstrap's clusters): <fold>-s<i % 4>
    (data / "utt2spk").write_text("".join(f"{u} {u.split('-')[0]}-s{int(u[-3:]) % 4}\n" for u in sorted(reference)))
    return d, reference


def read_pairs(path: Path) -> dict[str, str]:
    return dict(line.split() for line in path.read_text().splitlines())


def sk(fn, *a, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*a, **kw)


FOLDS = {"Ses01": 40, "Ses02": 55, "Ses03": 31}
META = {"system": "tdnn_l12", "set": "iemocap_4cls_exc", "protocol": "session", "description": "fake",
        "folds": list(FOLDS), "valid": {f: {"ua": 0.5, "wa": 0.55, "frame_acc": 0.4} for f in FOLDS}}


@pytest.fixture(scope="module")
def scored(tmp_path_factory):
    root = tmp_path_factory.mktemp("scored")
    d, ref = write_system(root, "tdnn_l12", FOLDS, meta=META)
    return d, ref, score_system(d, root / "data" / "iemocap_4cls_exc")


@pytest.fixture
def no_png(monkeypatch):
    """For tests of numbers only: skip drawing confusion.png (the slow part)."""
    monkeypatch.setattr("ser.eval.scoring.write_confusion_png", lambda *a, **k: None)


def test_results_equal_sklearn_end_to_end(scored):
    d, ref, res = scored
    on_disk = json.loads((d / "results.json").read_text())
    assert on_disk == json.loads(json.dumps(res))
    assert on_disk["schema"] == 2 and on_disk["labels"] == LABELS
    assert (on_disk["set"], on_disk["protocol"]) == ("iemocap_4cls_exc", "session")
    all_r, all_h, uas = [], [], []
    for f, fold in zip(on_disk["folds"], FOLDS):
        pred = read_pairs(d / fold / "utt2pred")
        r, h = [ref[u] for u in pred], list(pred.values())
        all_r += r
        all_h += h
        assert f["fold"] == fold and f["n"] == FOLDS[fold]
        assert f["ua"] == pytest.approx(skm.balanced_accuracy_score(r, h), abs=1e-12)
        assert f["wa"] == pytest.approx(skm.accuracy_score(r, h), abs=1e-12)
        assert f["macro_f1"] == pytest.approx(sk(skm.f1_score, r, h, average="macro"), abs=1e-12)
        assert f["confusion"] == skm.confusion_matrix(r, h, labels=LABELS).tolist()
        uas.append(f["ua"])
    assert on_disk["mean"]["ua"] == pytest.approx(np.mean(uas))
    assert on_disk["std"]["ua"] == pytest.approx(np.std(uas, ddof=1))
    p = on_disk["pooled"]
    assert p["n"] == sum(FOLDS.values())
    assert p["ua"] == pytest.approx(skm.balanced_accuracy_score(all_r, all_h), abs=1e-12)
    assert p["wa"] == pytest.approx(skm.accuracy_score(all_r, all_h), abs=1e-12)
    assert p["macro_f1"] == pytest.approx(sk(skm.f1_score, all_r, all_h, average="macro"), abs=1e-12)
    assert p["ua_ci95"][0] < p["ua"] < p["ua_ci95"][1]
    assert p["ua_mean_ci95"][0] < on_disk["mean"]["ua"] < p["ua_mean_ci95"][1]
    # speakers resampled (4 a fold): wider than the utterance interval, and each utterance names its speaker
    assert p["bootstrap"]["clusters"] == "speaker"
    assert p["ua_ci95"][1] - p["ua_ci95"][0] != p["ua_ci95_utterance"][1] - p["ua_ci95_utterance"][0]
    assert all(v[3] == f"{u.split('-')[0]}-s{int(u[-3:]) % 4}" for u, v in on_disk["utterances"].items())
    mean_cm = np.mean([skm.confusion_matrix([ref[u] for u in read_pairs(d / f / "utt2pred")],
                                            list(read_pairs(d / f / "utt2pred").values()),
                                            labels=LABELS, normalize="true") for f in FOLDS], axis=0)
    np.testing.assert_allclose(on_disk["confusion_mean"], mean_cm, atol=1e-12)
    assert len(on_disk["utterances"]) == p["n"]
    assert on_disk["valid"] == META["valid"]


def test_outputs_png_and_markdown(scored):
    d, _, res = scored
    assert (d / "confusion.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    md = (d / "results.md").read_text()
    for f in res["folds"]:
        assert f"| {f['fold']} | {f['n']} | {100 * f['ua']:.1f} | {100 * f['wa']:.1f} |" in md
    assert f"| mean ± std | | {100 * res['mean']['ua']:.1f} ± {100 * res['std']['ua']:.1f} |" in md
    assert f"| pooled | {res['pooled']['n']} | {100 * res['pooled']['ua']:.1f} |" in md
    assert "valid frame acc %" in md and "| 50.0 | 55.0 | 40.0 |" in md
    assert "sample standard deviation" in md and "confusion.png" in md
    assert not list(d.glob("*.tmp"))


def test_rescoring_gives_identical_files(scored):
    d, _, _ = scored
    before = {n: (d / n).read_bytes() for n in ("results.json", "results.md", "confusion.png")}
    score_system(d, d.parents[2] / "data" / "iemocap_4cls_exc")
    assert before == {n: (d / n).read_bytes() for n in before}


def test_absent_class_in_a_fold_and_one_fold(tmp_path, no_png):
    ref = {f"Ses05-u{i:03d}": ("ang" if i % 2 else "neu") for i in range(30)}
    d, _ = write_system(tmp_path, "tdnn_l13", {"Ses05": 30}, ref=ref)
    res = score_system(d, tmp_path / "data" / "iemocap_4cls_exc", protocol="session")
    f = res["folds"][0]
    assert f["absent"] == ["hap", "sad"] and f["recall"]["hap"] is None
    r = [ref[u] for u in sorted(ref)]
    h = list(read_pairs(d / "Ses05" / "utt2pred").values())
    assert f["ua"] == pytest.approx(sk(skm.balanced_accuracy_score, r, h))
    assert f["macro_f1"] == pytest.approx(sk(skm.f1_score, r, h, average="macro"))
    assert res["std"]["ua"] is None and res["set"] == "iemocap_4cls_exc"
    assert np.array(res["confusion_mean"])[[1, 3]].sum() == 0
    assert "Ses05: hap, sad" in (d / "results.md").read_text()


def test_mean_confusion_averages_each_row_over_folds_where_the_class_occurs(tmp_path, no_png):
    ref = {"A-u000": "ang", "A-u001": "neu", "B-u000": "neu", "B-u001": "neu"}
    d, _ = write_system(tmp_path, "s", {"A": 2, "B": 2}, ref=ref, acc=1.0)
    res = score_system(d, ref)
    assert res["confusion_mean"][0] == [1.0, 0.0, 0.0, 0.0]   # 'ang' only in fold A: not halved


def _corrupt(d: Path, fold: str, name: str, line: int, text: str | None) -> None:
    p = d / fold / name
    lines = p.read_text().splitlines()
    if text is None:
        del lines[line]
    else:
        lines[line] = text
    p.write_text("\n".join(lines) + "\n")


U = "Ses02-u003"
CASES = {
    "label": (lambda d: _corrupt(d, "Ses02", "utt2pred", 3, f"{U} fru"), f"utt2pred: utterance {U}: label 'fru'"),
    "nan": (lambda d: _corrupt(d, "Ses02", "utt2post", 3, f"{U} nan 0.5 0.25 0.25"), f"utterance {U}: non-finite"),
    "negative": (lambda d: _corrupt(d, "Ses02", "utt2post", 3, f"{U} -0.5 1.0 0.25 0.25"), f"{U}: negative"),
    "sum": (lambda d: _corrupt(d, "Ses02", "utt2post", 3, f"{U} 0.3 0.3 0.3 0.3"), f"{U}: posteriors sum to 1.2"),
    "columns": (lambda d: _corrupt(d, "Ses02", "utt2post", 3, f"{U} 0.5 0.5"), f"{U}: 2 posteriors, labels.txt has 4"),
    "text": (lambda d: _corrupt(d, "Ses02", "utt2post", 3, f"{U} a b c d"), f"{U}: non-numeric"),
    "no_post": (lambda d: _corrupt(d, "Ses02", "utt2post", 3, None), f"utt2pred: utterance {U} has no posteriors"),
    "no_pred": (lambda d: _corrupt(d, "Ses02", "utt2pred", 3, None), f"utt2post: utterance {U} has no decision"),
    "two_folds": (lambda d: (_corrupt(d, "Ses02", "utt2pred", 3, "Ses01-u000 ang"),
                             _corrupt(d, "Ses02", "utt2post", 3, "Ses01-u000 1 0 0 0")),
                  "Ses02/utt2pred: utterance Ses01-u000 is also tested in fold Ses01"),
    "not_in_ref": (lambda d: (_corrupt(d, "Ses02", "utt2pred", 3, "X-u1 ang"),
                              _corrupt(d, "Ses02", "utt2post", 3, "X-u1 1 0 0 0")),
                   "utterance X-u1 is not in the reference"),
    "duplicate": (lambda d: _corrupt(d, "Ses02", "utt2pred", 4, f"{U} ang"), f"duplicate key '{U}'"),
    "missing_post": (lambda d: (d / "Ses02" / "utt2post").unlink(), "Ses02/utt2post: missing"),
    "labels": (lambda d: (d / "labels.txt").unlink(), "labels.txt: missing"),
    "labels_dup": (lambda d: (d / "labels.txt").write_text("ang\nang\nneu\nsad\n"), "repeated label"),
    "meta_fold": (lambda d: (d / "meta.json").write_text(json.dumps({**META, "folds": ["Ses01", "Ses02"]})),
                  "Ses03: fold not listed in"),
    "meta_missing": (lambda d: (d / "meta.json").write_text(json.dumps({**META, "folds": [*FOLDS, "Ses04"]})),
                     "fold Ses04 has no"),
    "meta_json": (lambda d: (d / "meta.json").write_text("{"), "meta.json: not valid JSON"),
    "meta_folds_type": (lambda d: (d / "meta.json").write_text(json.dumps({"folds": "Ses01"})),
                        "meta.json: 'folds' must be a list"),
    "meta_valid": (lambda d: (d / "meta.json").write_text(json.dumps({"valid": {"Ses01": {"ua": "high"}}})),
                   "meta.json: valid.Ses01 must map names to numbers"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_validation_errors_name_file_and_utterance(tmp_path, case):
    d, _ = write_system(tmp_path, "tdnn_l12", FOLDS, meta=META)
    corrupt, message = CASES[case]
    corrupt(d)
    with pytest.raises(ScoringError) as e:
        score_system(d, tmp_path / "data" / "iemocap_4cls_exc")
    assert message in str(e.value) and "\n" not in str(e.value)
    assert not (d / "results.json").exists()


def test_reference_errors(tmp_path):
    d, ref = write_system(tmp_path, "s", FOLDS)
    with pytest.raises(ScoringError, match="utt2emo: utterance Ses01-u000: reference label 'fru'"):
        (tmp_path / "data" / "iemocap_4cls_exc" / "utt2emo").write_text("Ses01-u000 fru\n")
        score_system(d, tmp_path / "data" / "iemocap_4cls_exc")
    with pytest.raises(ScoringError, match="reference utt2emo missing"):
        score_system(d, tmp_path / "nowhere")
    with pytest.raises(ScoringError, match="no such system directory"):
        score_system(tmp_path / "nosys", ref)
    (d / "meta.json").write_text(json.dumps({"protocol": "speaker"}))
    with pytest.raises(ScoringError, match="meta.json: protocol 'speaker' differs from --protocol 'session'"):
        score_system(d, ref, protocol="session")


def test_paper1_hap_is_shown_as_exc_and_paper2_hap_as_happiness(scored, tmp_path):
    """Issue 24.4: paper 1's set calls IEMOCAP's excited turns hap; tables and figures show hap(exc), the
    data and results.json keep the machine label; paper 2's hap (happiness) is shown as it is."""
    d, _, res = scored
    md = (d / "results.md").read_text()
    assert "| hap(exc) |" in md and "| ref \\ decided | ang | hap(exc) | neu | sad |" in md and "excited" in md
    assert res["labels"] == LABELS and "hap" in LABELS
    assert shown_labels("iemocap_4cls_exc", LABELS) == ["hap(exc)" if x == "hap" else x for x in LABELS]
    assert shown_labels("iemocap_impro_agree", LABELS) == LABELS
    d2, _ = write_system(tmp_path, "dense", {"Ses01": 20, "Ses02": 20}, set_name="iemocap_impro_agree")
    md2 = score_system(d2, tmp_path / "data" / "iemocap_impro_agree") and (d2 / "results.md").read_text()
    assert "hap(exc)" not in md2 and "| hap |" in md2
