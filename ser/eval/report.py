"""exp/results.md: one row per emotion system x protocol, with confidence intervals and paired tests.

Regenerated from every ``exp/ser/<system>/results.json`` (ser.eval.scoring) whenever a
system is scored; deterministic (seeded bootstraps), so regenerating is idempotent,
and written atomically.  A directory under ``exp/ser`` counts as a system when it holds
``labels.txt``, ``meta.json`` or ``results.json``; without results.json it is listed as
"not scored yet".

Each system is compared with paper 1's ``tdnn_l12`` of its own set and protocol (``tdnn_l12`` itself on
paper 1's, ``tdnn_l12_<set>_<protocol>`` -- e.g. stage 9's ``tdnn_l12_agree_speaker`` -- on another;
see :func:`reference_name`) by a paired speaker-level bootstrap of the pooled-UA difference and McNemar's exact
test of accuracy (ser.eval.significance), with Holm-adjusted p-values over the table's comparisons, when both were
tested on the same utterances with the same reference labels; when one test set is
contained in the other (e.g. the Session 5 layer-selection systems of paper 1's Table 2)
the test runs on the common utterances and says so.  A cross-corpus test (results.json's ``test_corpus``,
ser/bin/score_xcorpus.py) is never paired: its corpus may reuse IEMOCAP's utterance ids for other
recordings.  Bootstrap strata are the pairs
(fold of the system, fold of tdnn_l12), i.e. the folds themselves when both use the
same protocol.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from ser.eval import significance
from ser.eval.scoring import SCHEMA, fmt_pct, fmt_pm
from ser.io.atomic import atomic_write_text

REFERENCE_SYSTEM = "tdnn_l12"

# Published figures, measured on the real corpora (see /work/shared/papers).
PAPER1 = {  # Zhou & Beigi: TDNN-F transfer from TED-LIUM ASR, IEMOCAP 4 classes, leave-one-session-out
    "cv_ua": 71.7,
    "per_session_ua": {"Ses01": 65.3, "Ses02": 78.9, "Ses03": 71.1, "Ses04": 73.9, "Ses05": 69.3},
    "table2_ses5": {"prefinal": 63.4, "tdnnf13": 69.3, "tdnnf12": 66.7},  # rows: Table 2's
    "prior_work_ua": {"RNN-ELM": 63.9, "Conv-LSTM": 68.8, "CTC-BLSTM": 54.0},
    # Table 1: per-session counts of its 4936-turn set, ang / exc (named hap) / neu / sad
    "table1": {"Ses01": (229, 143, 384, 194), "Ses02": (137, 210, 362, 197), "Ses03": (240, 151, 320, 305),
               "Ses04": (327, 238, 258, 143), "Ses05": (170, 299, 384, 245)},
}
P1_SET = "4 classes, ang / hap(exc) / neu / sad (4936 turns; hap(exc): IEMOCAP's excited, which paper 1 names hap)"
P2_SET = ("turns all evaluators agree on, ang / hap / neu / sad (500 / 94 / 392 / 467: Table 1, every turn; "
          "Sec. 5 says improvised only)")
PAPER2 = {  # Andova et al.: DeepSpeech first-layer features, IEMOCAP turns all evaluators agree on
    "majority": 34, "openSMILE + RandomForest": 67,
    "Dense": 58, "LSTM": 7, "Dense1+Dense2": 26, "Dense1+LSTM2": 66,
}


def _is_system(d: Path) -> bool:
    return d.is_dir() and any((d / n).is_file() for n in ("labels.txt", "meta.json", "results.json"))


def load_all(exp_dir: Path) -> list[tuple[str, dict | None]]:
    """(system name, results or None) for every system dir under exp/ser, sorted by name."""
    root = exp_dir / "ser"
    dirs = sorted(d for d in root.iterdir() if _is_system(d)) if root.is_dir() else []
    out = []
    for d in dirs:
        path = d / "results.json"
        if not path.is_file():
            out.append((d.name, None))
            continue
        try:
            res = json.loads(path.read_text(encoding="utf-8"))
        except ValueError as e:
            raise ValueError(f"{path}: not valid JSON: {e}") from None
        if not isinstance(res, dict) or res.get("schema") != SCHEMA:
            raise ValueError(f"{path}: not a schema-{SCHEMA} results file; re-score the system")
        out.append((d.name, res))
    return out


def reference_name(res: dict) -> str:
    """The name paper 1's tdnn_l12 has when run on ``res``'s set and protocol (the recipe's naming:
    ``iemocap_agree`` + ``speaker`` -> ``tdnn_l12_agree_speaker``)."""
    short = (res.get("set") or "").removeprefix("iemocap_")
    return f"{REFERENCE_SYSTEM}_{short}_{res.get('protocol')}"


def references(systems: list[tuple[str, dict | None]]) -> dict[tuple, tuple[str, dict]]:
    """(set, protocol) -> (name, results) of the tdnn_l12 every system of that set and protocol is
    compared with: ``tdnn_l12`` for its own, ``tdnn_l12_<set>_<protocol>`` for another."""
    refs = {}
    for name, res in systems:
        if res is not None and name in (REFERENCE_SYSTEM, reference_name(res)):
            refs.setdefault((res["set"], res["protocol"]), (name, res))
    return refs


def compare(res: dict, ref: dict) -> tuple[significance.PairedResult | None, str]:
    """Paired test of ``res`` against ``ref`` on their common test utterances, or (None, reason)."""
    if res.get("test_corpus") != ref.get("test_corpus"):  # other recordings, perhaps under the same ids
        return None, "n/a: tested on another corpus"
    a, b = res["utterances"], ref["utterances"]
    common = sorted(a.keys() & b.keys())
    if not common or any(a[u][1] != b[u][1] for u in common) or len(common) not in (len(a), len(b)):
        return None, "n/a: different test sets"
    note = "" if len(a) == len(b) else f" (on the {len(common)} common utterances)"
    labels = sorted(set(res["labels"]) | set(ref["labels"]))
    code = {lab: i for i, lab in enumerate(labels)}
    r = np.array([code[a[u][1]] for u in common])
    ha = np.array([code[a[u][2]] for u in common])
    hb = np.array([code[b[u][2]] for u in common])
    _, strata = np.unique([f"{a[u][0]}|{b[u][0]}" for u in common], return_inverse=True)
    # clusters: each utterance's speaker (results.json schema 2), else the utterance itself
    _, spk = np.unique([a[u][3] if len(a[u]) > 3 else u for u in common], return_inverse=True)
    return significance.paired_test(r, ha, hb, strata, len(labels), clusters=spk), note


def _p(p: float) -> str:
    return f"{p:.2g}" if p >= 0.001 else f"{p:.1e}"


HEADER = ("| system | set | protocol | folds | UA % | WA % | macro-F1 % | UA pooled | WA pooled | F1 pooled "
          f"| 95% CI UA mean of folds | 95% CI UA pooled | ΔUA vs {REFERENCE_SYSTEM} | p paired bootstrap (Holm) "
          "| p McNemar, accuracy (Holm) (b/c) |")
NUM_COLUMNS = HEADER.count(" | ") + 1


def _ci(pair: list[float]) -> str:
    return f"[{fmt_pct(pair[0])}, {fmt_pct(pair[1])}]"


def _row(name: str, res: dict | None, test: tuple[str, significance.PairedResult | None, tuple[float, float] | None]
         ) -> str:
    """One table row; ``test`` is (ΔUA cell text, paired result or None, Holm-adjusted (p bootstrap,
    p McNemar) or None)."""
    if res is None:
        return f"| {name} | | | | not scored yet |" + " |" * (NUM_COLUMNS - 5)
    p = res["pooled"]
    keys = ("ua", "wa", "macro_f1")
    cells = [name, res["set"] or "n/a", res["protocol"] or "n/a", str(len(res["folds"])),
             *(fmt_pm(res["mean"][k], res["std"][k]) for k in keys), *(fmt_pct(p[k]) for k in keys),
             _ci(p["ua_mean_ci95"]), _ci(p["ua_ci95"])]
    text, t, adj = test
    cells += [text, "", ""] if t is None else \
        [text, f"{_p(t.p_bootstrap)} ({_p(adj[0])})",
         f"{_p(t.p_mcnemar)} ({_p(adj[1])}) ({t.n_a_only}/{t.n_b_only})"]
    return "| " + " | ".join(cells) + " |"


def _tests(rows: list[tuple[str, dict | None]], refs: dict, main: tuple[str, dict | None]) -> list[tuple]:
    """Per row: (ΔUA cell, paired result or None, Holm-adjusted p pair or None); Holm over every row with a
    test, separately for the bootstrap and the McNemar p-values (two families)."""
    out = []
    for name, res in rows:
        ref_name, ref = refs.get((res["set"], res["protocol"]), main) if res else main
        if res is None:
            out.append(("", None))
        elif name == ref_name:
            out.append(("(reference)", None))
        elif ref is None:
            out.append((f"n/a: {REFERENCE_SYSTEM} not scored", None))
        else:
            t, note = compare(res, ref)
            note += "" if ref_name == REFERENCE_SYSTEM else f" vs {ref_name}"
            out.append((note if t is None else f"{100 * t.diff:+.1f}{note}", t))
    tested = [t for _, t in out if t is not None]
    adj = iter(zip(significance.holm([t.p_bootstrap for t in tested]),
                   significance.holm([t.p_mcnemar for t in tested])))
    return [(text, t, next(adj) if t is not None else None) for text, t in out]


def _figures(exp_dir: Path, name: str) -> str:
    d = exp_dir / "ser" / name
    links = [f"[confusion](ser/{name}/confusion.png)"] if (d / "confusion.png").is_file() else []
    links += [f"[{p.parent.name}/{p.stem}](ser/{name}/{p.parent.name}/{p.name})" for p in sorted(d.glob("*/*.png"))]
    return f"- {name}: " + (", ".join(links) if links else "no figures yet")


def _published() -> list[str]:
    p1 = PAPER1
    ses = " / ".join(f"{v:.1f}" for v in p1["per_session_ua"].values())
    t2 = ", ".join(f"{k} {v:.1f}" for k, v in p1["table2_ses5"].items())
    prior = ", ".join(f"{k} {v:g}" for k, v in p1["prior_work_ua"].items())
    rows = [("1 (Zhou & Beigi)", "TDNN-F transfer, layer 12 (`tdnn_l12`)", P1_SET, "session (5 folds)",
             f"UA {p1['cv_ua']} (mean of fold UAs; Table 3 per session Ses01..Ses05: {ses})"),
            ("1", "layer selection, Table 2", "same", "train Ses01-04, test Ses05", f"test accuracy: {t2}"),
            ("1", "prior work cited in Table 3", "same", "5-fold CV", f"UA: {prior}")]
    rows += [("2 (Andova et al.)" if i == 0 else "2", k, P2_SET if i == 0 else "same",
              "leave-one-speaker-out" if i == 0 else "same", f"accuracy {v}%") for i, (k, v) in enumerate(PAPER2.items())]
    return ["## Published figures (real IEMOCAP, not comparable with the embedded corpus)", "",
            "| paper | system | set | protocol | figure |", "|---|---|---|---|---|",
            *("| " + " | ".join(r) + " |" for r in rows),
            "", "Paper 1's Table 2 calls its figures test accuracy; its 12th-layer figure (66.7) differs from "
            "Table 3's Session 5 UA of the same system (69.3), which equals Table 2's 13th-layer figure, while "
            "the text says layer 12 was best: the two rows of Table 2 are probably swapped. Paper 2's Table 2 "
            "gives accuracy (WA), not UA; its majority figure is the share of the most frequent class.", ""]


def render(exp_dir: Path) -> str:
    systems = load_all(exp_dir)
    refs = references(systems)
    main = (REFERENCE_SYSTEM, dict(systems).get(REFERENCE_SYSTEM))

    def order(item: tuple[str, dict | None]) -> tuple:
        name, res = item
        return (res is None, (res or {}).get("set") or "", (res or {}).get("protocol") or "",
                name not in (REFERENCE_SYSTEM, reference_name(res or {})), name)

    lines = ["# Results", "",
             "Regenerated by `python -m ser.bin.make_results_report` from every `exp/ser/*/results.json`. "
             "Each row is measured on the corpus its set was prepared from: numbers on the embedded (synthetic) "
             "corpora show that the code works and say nothing about accuracy on real speech, which stays "
             "unmeasured until `conf/paper.yaml` is run on the real corpora.", "",
             "UA = mean per-class recall, WA = accuracy, macro-F1: mean ± sample std (ddof 1) over folds (the "
             "papers' figure), and pooled over all test utterances. 95% CIs: percentile bootstrap "
             f"({significance.DRAWS} draws, seed {significance.SEED}) of the mean of the fold UAs and of the pooled "
             "UA, resampling whole test SPEAKERS with replacement within each fold (turns of one speaker are not "
             "independent; resampling single turns gives intervals that are too narrow). Each interval conditions "
             "on the fold partition and the trained models (the uncertainty of testing on these speakers, not of "
             "training) and treats a fold's test speakers as drawn from a population of speakers; with 2 test "
             "speakers a fold (leave one session out) it is itself rough. "
             f"ΔUA: pooled UA of the system minus that of {REFERENCE_SYSTEM} on the same test utterances "
             f"(paper 1's {REFERENCE_SYSTEM} run on the row's set and protocol, named {REFERENCE_SYSTEM}_<set>_<protocol> "
             "where that is not paper 1's), with the two-sided paired bootstrap p of ΔUA (speakers resampled "
             "within folds) and McNemar's exact p, a test of ACCURACY (WA) on per-utterance correctness that "
             f"treats turns as independent (b = only this system right, c = only {REFERENCE_SYSTEM} right). In "
             "brackets: Holm-adjusted p over all the table's comparisons (each column its own family).", "",
             HEADER, "|" + "---|" * NUM_COLUMNS]
    rows = sorted(systems, key=order)
    lines += [_row(name, res, test) for (name, res), test in zip(rows, _tests(rows, refs, main))]
    if not systems:
        lines.append("| (no systems under exp/ser yet) |" + " |" * (NUM_COLUMNS - 1))
    lines += ["", "## Figures", ""]
    lines += [_figures(exp_dir, name) for name, _ in systems] or ["(none)"]
    lines += [""] + _published()
    return "\n".join(lines)


def write_results_report(exp_dir: str | os.PathLike = "exp") -> Path:
    """Regenerate ``<exp_dir>/results.md``; returns its path."""
    exp_dir = Path(exp_dir)
    if not exp_dir.is_dir():
        raise ValueError(f"{exp_dir}: no such experiment directory")
    path = exp_dir / "results.md"
    atomic_write_text(path, render(exp_dir))
    return path
