"""Paper 1's Tables 2 and 3 from the systems' ``results.json`` (ser.eval.scoring) and ``meta.json``.

* Table 2 -- the layer the head reads, trained on sessions 1-4 and tested on session 5
  (``tdnn_prefinal``, ``tdnn_l13`` and the Ses05 fold of ``tdnn_l12``).  The paper chose the layer
  on this test session; the table adds each layer's validation UA (speakers of sessions 1-4),
  the only column a choice may use.
* Table 3 -- per-session UA of the transfer system and the 5-fold mean, beside the same network
  trained without pretraining and with per-utterance i-vectors; transfer minus scratch per fold.

Numbers in percent, one decimal; the paper's published figures are printed beside ours.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ser.io.atomic import atomic_write_text

# paper 1 (Zhou & Beigi), Tables 2 and 3: test accuracy (%), UA on session 5 / per session
PAPER_TABLE2 = {"tdnn_prefinal": 63.4, "tdnn_l13": 69.3, "tdnn_l12": 66.7}
PAPER_TABLE3 = {"Ses01": 65.3, "Ses02": 78.9, "Ses03": 71.1, "Ses04": 73.9, "Ses05": 69.3,
                "mean": 71.7}
PAPER_OTHERS = [("RNN-ELM (Lee & Tashev 2015)", 63.9), ("Conv-LSTM (Satt et al. 2017)", 68.8),
                ("CTC-BLSTM (Chernykh et al. 2017)", 54.0)]
TABLE2_ROWS = [("tdnn_prefinal", "Prefinal"), ("tdnn_l13", "13th TDNN"), ("tdnn_l12", "12th TDNN")]
TABLE3_ROWS = [("tdnn_l12", "ASR transfer learning (tdnn_l12)"),
               ("tdnn_l12_uttivec", "ASR transfer, per-utterance i-vectors (tdnn_l12_uttivec)"),
               ("tdnn_scratch", "Same network without pretraining (tdnn_scratch)")]


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}"


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
    for system, name in TABLE2_ROWS:
        res = systems.get(system)
        f = res["by_fold"].get(fold) if res else None
        if f is None:
            lines.append(f"| {name} | - | not run | | | {PAPER_TABLE2[system]:.1f} |")
            continue
        layer = res["meta"].get("options", {}).get("layer", "?")
        v = (res["meta"].get("valid") or {}).get(fold, {}).get("ua")
        lines.append(f"| {name} | {layer} | {_pct(f['ua'])} | {_pct(f['wa'])} | {_pct(v)} | "
                     f"{PAPER_TABLE2[system]:.1f} |")
        if v is not None and (best is None or v > best[1]):
            best = (name, v)
    lines.append("")
    if best:
        lines.append(f"Layer the validation speakers choose: {best[0]} (valid UA {_pct(best[1])}). "
                     "Paper 1 chose the 12th layer.")
    return "\n".join(lines) + "\n"


def _row(name: str, values: list[float | None], tail: list[str]) -> str:
    return "| " + " | ".join([name] + [_pct(v) for v in values] + tail) + " |"


def table3(systems: dict[str, dict | None]) -> str:
    ref = systems.get("tdnn_l12")
    folds = sorted(ref["by_fold"]) if ref else sorted(PAPER_TABLE3.keys() - {"mean"})
    head = "| Model | " + " | ".join(folds) + " | mean UA % ± std | mean WA % | test frame acc % |"
    lines = ["# Table 3: unweighted accuracy (UA, %) per test session and 5-fold cross-validation",
             "", "Leave one session out; the paper's figure is the mean of the fold UAs.", "",
             head, "|" + "---|" * (len(folds) + 4)]
    for system, name in TABLE3_ROWS:
        res = systems.get(system)
        if res is None:
            lines.append(f"| {name} | " + " | ".join(["not run"] * len(folds)) + " | | | |")
            continue
        fa = [x for x in (res["meta"].get("test_frame_acc") or {}).values() if x is not None]
        tail = [f"{_pct(res['mean']['ua'])} ± {_pct(res['std']['ua'])}", _pct(res["mean"]["wa"]),
                _pct(float(np.mean(fa))) if fa else "n/a"]
        lines.append(_row(name, [res["by_fold"].get(f, {}).get("ua") for f in folds], tail))
    scratch = systems.get("tdnn_scratch")
    if ref and scratch:
        diff = [ref["by_fold"][f]["ua"] - scratch["by_fold"][f]["ua"]
                if f in scratch["by_fold"] else None for f in folds]
        d_mean = ref["mean"]["ua"] - scratch["mean"]["ua"]
        lines.append(_row("Transfer minus scratch", diff, [_pct(d_mean), "", ""]))
    lines.append("| Paper 1: ASR transfer learning | " + " | ".join(
        f"{PAPER_TABLE3[f]:.1f}" if f in PAPER_TABLE3 else "" for f in folds)
        + f" | {PAPER_TABLE3['mean']:.1f} | | |")
    for name, ua in PAPER_OTHERS:
        lines.append(f"| Paper 1 cites: {name} | " + " | ".join([""] * len(folds)) + f" | {ua:.1f} | | |")
    return "\n".join(lines) + "\n"


def write_tables(ser_dir: str | Path) -> tuple[Path, Path]:
    """Write ``<ser_dir>/table2.md`` and ``table3.md``; returns their paths."""
    d = Path(ser_dir)
    systems = {s: load_system(d, s) for s, _ in TABLE2_ROWS + TABLE3_ROWS}
    atomic_write_text(d / "table2.md", table2(systems))
    atomic_write_text(d / "table3.md", table3(systems))
    return d / "table2.md", d / "table3.md"
