"""Paper 1's Table 3 (ser.emotion.tables): the headline "mean UA ± std" is the mean of the fold UAs,
not the pooled UA (the two differ when the folds differ in size, as IEMOCAP's sessions do)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ser.emotion.tables import write_tables
from ser.eval.scoring import SystemOutputs, summarise

LABELS = ["ang", "sad"]


def _outputs(folds: dict[str, list[tuple[int, int]]]) -> SystemOutputs:
    """Decisions of a system: fold -> [(reference, decision)]."""
    out = SystemOutputs(LABELS, sorted(folds))
    for f in sorted(folds):
        for i, (r, h) in enumerate(folds[f]):
            out.utts.append(f"{f}-u{i}")
            out.fold_of.append(f)
            out.ref.append(r)
            out.hyp.append(h)
    return out


# Ses01: 4 utterances, all right (UA 1); Ses02: 20 utterances, half of each class right (UA 0.5).
# Mean of the fold UAs 0.75, sample std sqrt(0.125) = 0.354; pooled UA (2 + 5) / 12 = 0.583.
L12 = {"Ses01": [(0, 0), (0, 0), (1, 1), (1, 1)],
       "Ses02": [(0, 0)] * 5 + [(0, 1)] * 5 + [(1, 1)] * 5 + [(1, 0)] * 5}
# scratch: Ses01 UA 0.5 (one of two right per class), Ses02 UA 0.5: mean 0.5, std 0
SCRATCH = {"Ses01": [(0, 0), (0, 1), (1, 1), (1, 0)], "Ses02": L12["Ses02"]}


def _write_system(ser_dir: Path, name: str, folds) -> dict:
    res = dict(summarise(_outputs(folds)), system=name, labels=LABELS)
    d = ser_dir / name
    d.mkdir(parents=True)
    (d / "results.json").write_text(json.dumps(res))
    (d / "meta.json").write_text(json.dumps({"options": {"layer": "tdnnf12"}}))
    return res


def _row(md: str, start: str) -> list[str]:
    line = next(ln for ln in md.splitlines() if ln.startswith(f"| {start}"))
    return [c.strip() for c in line.strip("|").split("|")]


def test_table3_mean_ua_is_the_mean_of_the_fold_uas(tmp_path):
    res = _write_system(tmp_path, "tdnn_l12", L12)
    _write_system(tmp_path, "tdnn_scratch", SCRATCH)
    _write_system(tmp_path, "tdnn_l12_noivec", {"Ses01": SCRATCH["Ses01"]})   # tested on Ses01 only
    assert res["mean"]["ua"] == 0.75 and abs(res["pooled"]["ua"] - 7 / 12) < 1e-12  # the two figures differ
    _, t3 = write_tables(tmp_path)
    md = t3.read_text()
    head = _row(md, "Model")
    row = dict(zip(head, _row(md, "ASR transfer learning (tdnn_l12)")))
    assert row["Ses01"] == "100.0" and row["Ses02"] == "50.0"
    std = float(np.std([1.0, 0.5], ddof=1))
    assert row["mean UA % ± std"] == f"75.0 ± {100 * std:.1f}" == "75.0 ± 35.4"  # not the pooled 58.3
    assert row["mean WA %"] == "75.0"  # WA of the folds, (1 + 0.5) / 2; pooled 7 / 12
    diff = dict(zip(head, _row(md, "Transfer minus scratch")))
    assert (diff["Ses01"], diff["Ses02"], diff["mean UA % ± std"]) == ("50.0", "0.0", "25.0")
    diff = dict(zip(head, _row(md, "i-vectors minus none")))   # 0.75 - 0.5: the means of their own folds
    assert (diff["Ses01"], diff["Ses02"], diff["mean UA % ± std"]) == ("50.0", "n/a", "25.0")


def test_table1_counts_the_prepared_set_per_session(tmp_path):
    """exp/ser/table1.md (paper 1's Table 1) against counts made here from the set's files; paper 1's
    class exc is shown as hap(exc); the paper's real-corpus counts (4936) are printed beside."""
    from ser.bin import make_ser_tables
    from ser.io.datadir import DataDir

    rng = np.random.default_rng(4)
    labels = ["ang", "hap", "neu", "sad"]
    utt2spk, emo, sess = {}, {}, {}
    for s in (1, 2, 3):
        for k in range(int(rng.integers(5, 30))):
            u = f"Ses0{s}F-Ses0{s}F_impro01_F{k:03d}"
            utt2spk[u], emo[u], sess[u] = f"Ses0{s}F", labels[int(rng.integers(4))], f"Ses0{s}"
    set_dir = tmp_path / "data" / "iemocap_4cls_exc"
    DataDir(utt2spk=utt2spk, extras={"utt2emo": emo, "utt2session": sess}).write(set_dir)
    # the reference count: the two files, read as text
    pairs = [(dict(ln.split() for ln in (set_dir / "utt2session").read_text().splitlines())[u], e)
             for u, e in (ln.split() for ln in (set_dir / "utt2emo").read_text().splitlines())]
    assert make_ser_tables.main(["--set-dir", str(set_dir), str(tmp_path / "ser")]) == 0
    md = (tmp_path / "ser" / "table1.md").read_text()
    assert _row(md, "session") == ["session", "ang", "hap(exc)", "neu", "sad", "total"]
    for s in ("Ses01", "Ses02", "Ses03"):
        want = [sum(1 for p in pairs if p == (s, c)) for c in labels]
        assert _row(md, s) == [s, *map(str, want), str(sum(want))]
    total = [sum(1 for p in pairs if p[1] == c) for c in labels]
    assert _row(md, "total") == ["total", *map(str, total), str(len(pairs))]
    assert _row(md, "share %")[1:] == [f"{100 * t / len(pairs):.1f}" for t in total] + ["100"]
    paper = md.split("Paper 1, Table 1")[1]
    assert "| ses1 | 229 | 143 | 384 | 194 | 950 |" in paper and "| total | 1103 | 1041 | 1708 | 1084 | 4936 |" in paper
