"""exp/results.md (ser.eval.report) and the programs score_ser / make_results_report, on fake systems."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from ser.bin import make_results_report, score_ser
from ser.cli import run_program
from ser.eval.report import compare, write_results_report
from ser.eval.significance import paired_test

from test_eval_scoring import FOLDS, LABELS, write_system

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def scored_exp(tmp_path_factory) -> Path:
    """tdnn_l12 (session folds), a better tdnn_scratch on the same utterances, tdnn_l13 on Ses03 only,
    a paper-2 style system on another set, a fold curve PNG, an unscored system dir and a non-system dir."""
    root = tmp_path_factory.mktemp("exp")
    data = root / "data" / "iemocap_4cls_exc"
    ref_dir, ref = write_system(root, "tdnn_l12", FOLDS, seed=1, acc=0.5,
                                meta={"set": "iemocap_4cls_exc", "protocol": "session", "folds": list(FOLDS)})
    (ref_dir / "Ses01" / "training_curve.png").write_bytes(b"\x89PNG\r\n\x1a\nfake")
    write_system(root, "tdnn_scratch", FOLDS, seed=2, acc=0.95, ref=ref)
    write_system(root, "tdnn_l13", {"Ses03": FOLDS["Ses03"]}, seed=3, acc=0.5, ref=ref)
    (root / "exp" / "ser" / "tdnn_l12_uttivec").mkdir()
    (root / "exp" / "ser" / "tdnn_l12_uttivec" / "labels.txt").write_text("ang\n")
    (root / "exp" / "ser" / "cache").mkdir()
    other = {f"Ses01F-u{i:03d}": LABELS[i % 4] for i in range(20)}
    write_system(root, "dense", {"Ses01F": 20}, ref=other, set_name="iemocap_impro_agree")
    assert score_ser.main(["--protocol", "session", str(data), str(ref_dir)]) == 0
    with pytest.MonkeyPatch.context() as m:     # one confusion.png is enough here (drawing is the slow part)
        m.setattr("ser.eval.scoring.write_confusion_png", lambda *a, **k: None)
        for name in ("tdnn_scratch", "tdnn_l13"):
            assert score_ser.main(["--protocol", "session", str(data), str(root / "exp" / "ser" / name)]) == 0
        assert score_ser.main(["--protocol", "speaker", str(root / "data" / "iemocap_impro_agree"),
                               str(root / "exp" / "ser" / "dense")]) == 0
    return root


@pytest.fixture
def exp_copy(scored_exp, tmp_path) -> Path:
    shutil.copytree(scored_exp, tmp_path, dirs_exist_ok=True)
    return tmp_path / "exp"


def rows(md: str) -> dict[str, list[str]]:
    out = {}
    for line in md.splitlines():
        if line.startswith("| ") and not line.startswith("| system") and not line.startswith("| paper"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            out[cells[0]] = cells
    return out


def test_report_rows_tests_and_links(scored_exp):
    exp = scored_exp / "exp"
    md = (exp / "results.md").read_text()
    r = rows(md)
    header = next(line for line in md.splitlines() if line.startswith("| system"))
    assert all(len(cells) == header.count("|") - 1 for name, cells in r.items() if name.startswith(("tdnn", "dense")))
    res = json.loads((exp / "ser" / "tdnn_l12" / "results.json").read_text())
    assert r["tdnn_l12"][1:4] == ["iemocap_4cls_exc", "session", "3"]
    assert r["tdnn_l12"][4] == f"{100 * res['mean']['ua']:.1f} ± {100 * res['std']['ua']:.1f}"
    assert r["tdnn_l12"][7] == f"{100 * res['pooled']['ua']:.1f}"
    lo, hi = res["pooled"]["ua_ci95"]
    assert r["tdnn_l12"][11] == f"[{100 * lo:.1f}, {100 * hi:.1f}]" and r["tdnn_l12"][12] == "(reference)"
    assert r["tdnn_scratch"][12].startswith("+") and float(r["tdnn_scratch"][13].split()[0]) < 0.01
    assert "on the 31 common utterances" in r["tdnn_l13"][12]
    assert r["dense"][1:3] == ["iemocap_impro_agree", "speaker"] and r["dense"][12] == "n/a: different test sets"
    assert "not scored yet" in r["tdnn_l12_uttivec"] and "cache" not in r
    assert "[confusion](ser/tdnn_l12/confusion.png)" in md and "[confusion](ser/dense/" not in md
    assert "[Ses01/training_curve](ser/tdnn_l12/Ses01/training_curve.png)" in md
    assert (exp / "ser" / "tdnn_l12" / "Ses01" / "training_curve.png").is_file()


def test_reference_of_another_protocol_is_tdnn_l12_run_there(exp_copy):
    """Under paper 2's set and protocol the paired tests compare with tdnn_l12_impro_agree_speaker (paper 1's
    tdnn_l12 run there), not with the session-fold tdnn_l12; paper 1's rows keep tdnn_l12."""
    root = exp_copy.parent
    other = {f"Ses01F-u{i:03d}": LABELS[i % 4] for i in range(20)}
    d, _ = write_system(root, "tdnn_l12_impro_agree_speaker", {"Ses01F": 20}, seed=5, ref=other,
                        set_name="iemocap_impro_agree")
    assert score_ser.main(["--protocol", "speaker", str(root / "data" / "iemocap_impro_agree"), str(d)]) == 0
    r = rows((exp_copy / "results.md").read_text())
    assert r["tdnn_l12_impro_agree_speaker"][12] == "(reference)" and r["tdnn_l12"][12] == "(reference)"
    a, b = (json.loads((exp_copy / "ser" / n / "results.json").read_text())
            for n in ("dense", "tdnn_l12_impro_agree_speaker"))
    t, note = compare(a, b)
    assert note == "" and r["dense"][12] == f"{100 * t.diff:+.1f} vs tdnn_l12_impro_agree_speaker"
    assert r["tdnn_scratch"][12].startswith("+") and "vs" not in r["tdnn_scratch"][12]


def test_published_figures_section(tmp_path):
    (tmp_path / "exp").mkdir()
    write_results_report(tmp_path / "exp")
    md = (tmp_path / "exp" / "results.md").read_text()
    assert "## Published figures (real IEMOCAP, not comparable with the embedded corpus)" in md
    for figure in ("UA 71.7", "65.3 / 78.9 / 71.1 / 73.9 / 69.3", "prefinal 63.4, tdnnf13 69.3, tdnnf12 66.7",
                   "| majority | turns all evaluators agree on", "Sec. 5 says improvised only", "accuracy 34%", "openSMILE + RandomForest", "accuracy 67%",
                   "| Dense | ", "accuracy 58%", "| LSTM |", "accuracy 7%", "accuracy 26%", "accuracy 66%",
                   "leave-one-speaker-out", "session (5 folds)"):
        assert figure in md, figure


def test_paired_test_in_report_equals_direct_call(scored_exp):
    exp = scored_exp / "exp"
    a = json.loads((exp / "ser" / "tdnn_scratch" / "results.json").read_text())
    b = json.loads((exp / "ser" / "tdnn_l12" / "results.json").read_text())
    t, note = compare(a, b)
    utts = sorted(a["utterances"])
    code = {lab: i for i, lab in enumerate(LABELS)}
    ref = np.array([code[a["utterances"][u][1]] for u in utts])
    ha = np.array([code[a["utterances"][u][2]] for u in utts])
    hb = np.array([code[b["utterances"][u][2]] for u in utts])
    fold_index = {f: i for i, f in enumerate(sorted(FOLDS))}
    folds = np.array([fold_index[a["utterances"][u][0]] for u in utts])
    _, spk = np.unique([a["utterances"][u][3] for u in utts], return_inverse=True)   # the speaker clusters
    assert note == "" and t == paired_test(ref, ha, hb, folds, 4, clusters=spk)
    assert a["pooled"]["bootstrap"]["clusters"] in ("speaker", "utterance")
    assert t.diff == pytest.approx(a["pooled"]["ua"] - b["pooled"]["ua"], abs=1e-12)


def test_report_pairs_resample_within_folds():
    """compare() hands the folds to the paired bootstrap: a case where each fold holds one (class,
    a right?, b right?) cell has p = 1 / (draws + 1) within folds and p > 0.5 across them
    (test_eval_significance.test_paired_resampling_is_stratified_by_fold)."""
    folds = ["Ses01"] * 10 + ["Ses02"] * 9 + ["Ses03"] * 10
    ref = ["ang"] * 19 + ["sad"] * 10
    hyp_a = ["ang"] * 10 + ["sad"] * 9 + ["sad"] * 10
    hyp_b = ["sad"] * 10 + ["ang"] * 9 + ["sad"] * 10

    def res(hyp):
        return {"labels": ["ang", "sad"], "test_corpus": None,
                "utterances": {f"{f}-u{i:02d}": [f, r, h] for i, (f, r, h) in enumerate(zip(folds, ref, hyp))}}
    t, note = compare(res(hyp_a), res(hyp_b))
    assert note == "" and t.diff == pytest.approx(0.5 / 19) and t.p_bootstrap == 1 / 2001


def test_regenerating_is_idempotent_and_atomic(exp_copy):
    exp = exp_copy
    first = (exp / "results.md").read_bytes()
    assert make_results_report.main([str(exp)]) == 0
    assert (exp / "results.md").read_bytes() == first
    assert not list(exp.glob("*.tmp"))


def test_programs_fail_with_one_line(exp_copy, tmp_path, capsys):
    exp, data = exp_copy, exp_copy.parent / "data" / "iemocap_4cls_exc"
    (exp / "ser" / "tdnn_l13" / "Ses03" / "utt2post").write_text("Ses03-u000 0.5 0.5 0.5 0.5\n")
    assert run_program(score_ser.main, [str(data), str(exp / "ser" / "tdnn_l13")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("score_ser: ") and "utt2post: utterance Ses03-u000: posteriors sum to 2" in err
    assert len(err.splitlines()) == 1
    (exp / "ser" / "tdnn_l13" / "results.json").write_text('{"schema": 0}')
    assert run_program(make_results_report.main, [str(exp)]) == 1
    assert "tdnn_l13/results.json: not a schema-2 results file" in capsys.readouterr().err
    assert run_program(make_results_report.main, [str(tmp_path / "nowhere")]) == 1
    assert capsys.readouterr().err.strip() == f"make_results_report: {tmp_path / 'nowhere'}: no such experiment directory"


def test_score_step_script():
    p = subprocess.run([str(ROOT / "steps" / "ser" / "score.sh"), "--help"], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith("usage: score_ser [-h] [--protocol PROTOCOL] [--set SET_NAME] data system_dir")
