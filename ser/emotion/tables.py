"""Paper 1's Tables 1, 2 and 3: Table 1 from the prepared set, Tables 2 and 3 from the systems'
``results.json`` (ser.eval.scoring) and ``meta.json``.

* Table 1 -- per-session class counts of the prepared set (``data/iemocap_4cls_exc``: ang, exc shown as
  ``hap(exc)``, neu, sad), with the shares, beside paper 1's counts on the real corpus.
* Table 2 -- the layer the head reads, trained on sessions 1-4 and tested on session 5
  (``tdnn_prefinal``, ``tdnn_l13`` and the Ses05 fold of ``tdnn_l12``).  The paper chose the layer
  on this test session; the table adds each layer's validation UA (speakers of sessions 1-4),
  the only column a choice may use.
* Table 3 -- per-session UA of the transfer system and the 5-fold mean, beside the same network
  trained without pretraining, with per-utterance i-vectors and without i-vectors; transfer minus scratch
  and with minus without i-vectors per fold.

Numbers in percent, one decimal; the paper's published figures are printed beside ours.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ser.eval.classes import shown_labels
from ser.eval.report import PAPER1
from ser.eval.scoring import fmt_pct, fmt_pm
from ser.io.atomic import atomic_write_text
from ser.io.datadir import DataDir, DataDirError

# system, the paper's row name, the key of the paper's Table 2 figure (its row; "prefinal" is read as
# tdnn_1g's prefinal-chain, the 1024-dim prefinal-layer: conf ser.prefinal_layer, README)
TABLE2_ROWS = [("tdnn_prefinal", "Prefinal", "prefinal"), ("tdnn_l13", "13th TDNN", "tdnnf13"),
               ("tdnn_l12", "12th TDNN", "tdnnf12")]
TABLE3_ROWS = [("tdnn_l12", "ASR transfer learning (tdnn_l12)"),
               ("tdnn_l12_uttivec", "ASR transfer, per-utterance i-vectors (tdnn_l12_uttivec)"),
               ("tdnn_l12_noivec", "ASR transfer without i-vectors, MFCC only (tdnn_l12_noivec)"),
               ("tdnn_scratch", "Same network without pretraining (tdnn_scratch)")]
# tdnn_l12 minus another system, per fold and in the mean UA
DIFF_ROWS = [("tdnn_scratch", "Transfer minus scratch"),
             ("tdnn_l12_noivec", "i-vectors minus none (tdnn_l12 - tdnn_l12_noivec)")]


def _count_rows(counts: dict[str, list[int]]) -> list[str]:
    """Rows ``| <session> | n_1 | ... | total |`` of per-session class counts, then the total and the
    shares (% of the total) per class."""
    rows = [f"| {s} | " + " | ".join(map(str, c)) + f" | {sum(c)} |" for s, c in counts.items()]
    total = [sum(col) for col in zip(*counts.values())]
    n = sum(total)
    rows.append("| total | " + " | ".join(map(str, total)) + f" | {n} |")
    rows.append("| share % | " + " | ".join(f"{100 * t / n:.1f}" if n else "n/a" for t in total) + " | 100 |")
    return rows


def table1(set_dir: str | Path, labels: list[str]) -> str:
    """Paper 1's Table 1: the prepared set's class counts per session (its ``utt2emo`` and ``utt2session``),
    classes in ``labels`` order and shown as people read them (``hap(exc)``), beside the paper's counts."""
    d = DataDir.load(set_dir)
    for table in ("utt2emo", "utt2session"):
        if not d.has(table):
            raise DataDirError(f"{d.path}: no {table} (made by local/prepare_iemocap.sh)")
    emo, sess = d.extra("utt2emo"), d.extra("utt2session")
    bad = next((u for u in d.utts if emo.get(u) not in labels or u not in sess), None)
    if bad is not None:
        raise DataDirError(f"{d.path}: utterance {bad!r} has label {emo.get(bad)!r} or no session "
                           f"(labels: {' '.join(labels)})")
    counts = {s: [0] * len(labels) for s in sorted(set(sess[u] for u in d.utts))}
    for u in d.utts:
        counts[sess[u]][labels.index(emo[u])] += 1
    shown = shown_labels(d.path.name, labels)
    head = ["| session | " + " | ".join(shown) + " | total |", "|---" * (len(labels) + 2) + "|"]
    paper = {s.replace("Ses0", "ses"): list(c) for s, c in PAPER1["table1"].items()}
    return "\n".join([f"# Table 1: emotion classes per session of {d.path.name}", "", *head, *_count_rows(counts),
                      "", "Paper 1, Table 1 (real IEMOCAP; its class exc is this table's hap(exc)):", "",
                      "| session | ang | exc | neu | sad | total |", "|---|---|---|---|---|---|",
                      *_count_rows(paper)]) + "\n"


def write_table1(set_dir: str | Path, labels: list[str], out: str | Path) -> Path:
    """Write paper 1's Table 1 of ``set_dir`` to ``out`` (exp/ser/table1.md)."""
    atomic_write_text(out, table1(set_dir, labels))
    return Path(out)


def load_system(ser_dir: Path, system: str) -> dict | None:
    """results.json of a system merged with its meta.json (None when not scored)."""
    d = ser_dir / system
    try:
        res = json.loads((d / "results.json").read_text())
        meta = json.loads((d / "meta.json").read_text())
    except (OSError, ValueError):
        return None
    res["meta"] = meta
    res["by_fold"] = {f["fold"]: f for f in res["folds"]}
    return res


def table2(systems: dict[str, dict | None], fold: str = "Ses05") -> str:
    lines = [f"# Table 2: test accuracy on {fold} with different bottleneck layers", "",
             f"Trained on the other sessions, tested on {fold}. Valid UA: the held-out speaker of the "
             "training sessions (model selection); choosing the layer on the test columns would be "
             "leakage.", "",
             "| Bottleneck layer | Kaldi layer | test UA % | test WA % | valid UA % | paper test % |",
             "|---|---|---|---|---|---|"]
    best = None
    for system, name, paper_layer in TABLE2_ROWS:
        paper = PAPER1["table2_ses5"][paper_layer]
        res = systems.get(system)
        f = res["by_fold"].get(fold) if res else None
        if f is None:
            lines.append(f"| {name} | - | not run | | | {paper:.1f} |")
            continue
        layer = res["meta"].get("options", {}).get("layer", "?")
        v = (res["meta"].get("valid") or {}).get(fold, {}).get("ua")
        lines.append(f"| {name} | {layer} | {fmt_pct(f['ua'])} | {fmt_pct(f['wa'])} | {fmt_pct(v)} | "
                     f"{paper:.1f} |")
        if v is not None and (best is None or v > best[1]):
            best = (name, v)
    lines.append("")
    if best:
        lines.append(f"Layer the validation speakers choose: {best[0]} (valid UA {fmt_pct(best[1])}). "
                     "Paper 1 chose the 12th layer.")
    return "\n".join(lines) + "\n"


def _row(name: str, values: list[float | None], tail: list[str]) -> str:
    return "| " + " | ".join([name] + [fmt_pct(v) for v in values] + tail) + " |"


def table3(systems: dict[str, dict | None]) -> str:
    ref = systems.get("tdnn_l12")
    per_session = PAPER1["per_session_ua"]
    folds = sorted(ref["by_fold"]) if ref else sorted(per_session)
    head = "| Model | " + " | ".join(folds) + " | mean UA % ± std | mean WA % | test frame acc % |"
    lines = ["# Table 3: unweighted accuracy (UA, %) per test session and over the cross-validation folds",
             "", "Leave one session out; the paper's figure is the mean of the fold UAs.", "",
             head, "|" + "---|" * (len(folds) + 4)]
    for system, name in TABLE3_ROWS:
        res = systems.get(system)
        if res is None:
            lines.append(f"| {name} | " + " | ".join(["not run"] * len(folds)) + " | | | |")
            continue
        fa = [x for x in (res["meta"].get("test_frame_acc") or {}).values() if x is not None]
        tail = [fmt_pm(res["mean"]["ua"], res["std"]["ua"]), fmt_pct(res["mean"]["wa"]),
                fmt_pct(float(np.mean(fa))) if fa else "n/a"]
        lines.append(_row(name, [res["by_fold"].get(f, {}).get("ua") for f in folds], tail))
    for other, name in DIFF_ROWS:
        res = systems.get(other)
        if ref and res:
            diff = [ref["by_fold"][f]["ua"] - res["by_fold"][f]["ua"] if f in res["by_fold"] else None
                    for f in folds]
            lines.append(_row(name, diff, [fmt_pct(ref["mean"]["ua"] - res["mean"]["ua"]), "", ""]))
    lines.append("| Paper 1: ASR transfer learning | " + " | ".join(
        f"{per_session[f]:.1f}" if f in per_session else "" for f in folds)
        + f" | {PAPER1['cv_ua']:.1f} | | |")
    for name, ua in PAPER1["prior_work_ua"].items():
        lines.append(f"| Paper 1 cites: {name} | " + " | ".join([""] * len(folds)) + f" | {ua:.1f} | | |")
    return "\n".join(lines) + "\n"


def write_tables(ser_dir: str | Path, table2_fold: str = "Ses05") -> tuple[Path, Path]:
    """Write ``<ser_dir>/table2.md`` (layer selection on ``table2_fold``) and ``table3.md``."""
    d = Path(ser_dir)
    names = [r[0] for r in TABLE2_ROWS] + [r[0] for r in TABLE3_ROWS]
    systems = {s: load_system(d, s) for s in names}
    atomic_write_text(d / "table2.md", table2(systems, table2_fold))
    atomic_write_text(d / "table3.md", table3(systems))
    return d / "table2.md", d / "table3.md"
