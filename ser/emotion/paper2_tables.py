"""Paper 2's tables and figure from the scored systems (stage 9).

* ``paper2_table1.md``: class counts and shares of the set (paper 2's Table 1: 500 / 94 / 467 / 392 real turns of
  ang / hap / sad / neu, every turn all evaluators agree on: ``iemocap_agree``);
* ``paper2_table2.md``: the paper's form (head x {majority, baseline, DeepSpeech features} accuracy), then
  every system with accuracy, UA / WA / macro-F1 (mean ± std over folds) and the paper's figure;
* ``paper2_fig3.png``: ``ds_dense_lstm`` accuracy against segment length (paper 2's Fig. 3).

Accuracy, the paper's figure, is the fraction of all test utterances decided right, pooled over the
leave-one-speaker-out folds (``results.json`` ``pooled.wa``).
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from ser.eval.report import PAPER2
from ser.eval.scoring import fmt_pct, fmt_pm
from ser.io.atomic import atomic_open, atomic_write_text
from ser.io.datadir import DataDir

PAPER2_COUNTS = {"ang": 500, "hap": 94, "sad": 467, "neu": 392}   # paper 2, Table 1 (real corpus)
HEAD_ROWS = {"ds_dense": "Dense", "ds_lstm": "LSTM", "ds_dense_dense": "Dense1+Dense2",
             "ds_dense_lstm": "Dense1+LSTM2"}
BASELINE_ROWS = {"majority": "majority", "rf": "openSMILE + RandomForest"}


def _results(system_dir: Path) -> dict | None:
    p = system_dir / "results.json"
    return json.loads(p.read_text()) if p.is_file() else None


def table1(set_dir: Path) -> str:
    emo = Counter(DataDir.load(set_dir).extra("utt2emo").values())
    labels = sorted(emo)
    share = lambda counts: " | ".join(f"{100 * counts.get(c, 0) / sum(counts.values()):.1f}" for c in labels)  # noqa: E731
    lines = [f"# Paper 2, Table 1: classes of {set_dir.name}", "",
             "| | " + " | ".join(labels) + " | total |", "|---" * (len(labels) + 2) + "|",
             "| this corpus | " + " | ".join(str(emo[c]) for c in labels) + f" | {sum(emo.values())} |",
             "| paper 2 (real IEMOCAP) | " + " | ".join(str(PAPER2_COUNTS.get(c, "")) for c in labels)
             + f" | {sum(PAPER2_COUNTS.values())} |",
             f"| this corpus, % | {share(emo)} | 100 |", f"| paper 2, % | {share(PAPER2_COUNTS)} | 100 |"]
    return "\n".join(lines) + "\n"


def _acc(res: dict | None) -> str:
    return fmt_pct(res["pooled"]["wa"]) if res else "not run"


def table2(ser_dir: Path) -> str:
    res = {s: _results(ser_dir / s) for s in (*HEAD_ROWS, *BASELINE_ROWS)}
    lines = ["# Paper 2, Table 2: accuracy, leave one speaker out", "",
             "Paper's form (this corpus; the paper's real-corpus figure in brackets):", "",
             "| model | majority | baseline | DeepSpeech features |", "|---|---|---|---|"]
    for s, row in HEAD_ROWS.items():
        lines.append(f"| {row} | {_acc(res['majority'])} [{PAPER2['majority']}] | {_acc(res['rf'])} "
                     f"[{PAPER2['openSMILE + RandomForest']}] | {_acc(res[s])} [{PAPER2[row]}] |")
    lines += ["", "Every system (accuracy pooled over folds; UA / WA / macro-F1 mean ± std over folds):", "",
              "| system | accuracy | UA | WA | macro-F1 | folds | paper 2 accuracy |", "|---|---|---|---|---|---|---|"]
    for s, row in {**BASELINE_ROWS, **HEAD_ROWS}.items():
        r = res[s]
        if r is None:
            lines.append(f"| {s} | not run | | | | | {PAPER2[row]} |")
            continue
        m, sd = r["mean"], r["std"]
        lines.append(f"| {s} | {_acc(r)} | {fmt_pm(m['ua'], sd['ua'])} | {fmt_pm(m['wa'], sd['wa'])} | "
                     f"{fmt_pm(m['macro_f1'], sd['macro_f1'])} | {len(r['folds'])} | {PAPER2[row]} |")
    return "\n".join(lines) + "\n"


def pooled_accuracy(system_dir: Path, utt2emo: dict[str, str]) -> tuple[int, float]:
    """(segment frames, accuracy over every fold's utt2pred) of a ``ds_dense_lstm`` run."""
    meta = json.loads((system_dir / "meta.json").read_text())
    right = total = 0
    for fold in meta["folds"]:
        for line in (system_dir / fold / "utt2pred").read_text().splitlines():
            utt, pred = line.split()
            right += utt2emo[utt] == pred
            total += 1
    return meta["options"]["heads"]["segment_frames"], right / total


def fig3(points: list[tuple[int, float]], path: Path) -> None:
    """Accuracy against segment length (paper 2's Fig. 3) as a PNG."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from matplotlib.ticker import NullLocator

    points = sorted(points)
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    ax.plot([p[0] for p in points], [100 * p[1] for p in points], "-o")
    ax.set(xscale="log", xlabel="segment length (frames of 20 ms)", ylabel="accuracy (%)")
    ax.set_title("ds_dense_lstm: accuracy against segment length\n(test utterances of all folds pooled)", fontsize=10)
    ax.set_xticks([p[0] for p in points], [str(p[0]) for p in points])
    ax.xaxis.set_minor_locator(NullLocator())   # the log axis' minor labels (3x10^1 ...) overprint the points
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    with atomic_open(path, "wb") as f:
        fig.savefig(f, format="png", dpi=100)
    plt.close(fig)


def write_tables(set_dir: Path, exp_dir: Path) -> list[Path]:
    """Table 1, Table 2 and Fig. 3 (from exp/ser/ds_dense_lstm and exp/paper2_fig3/seg*) into exp/ser."""
    ser = exp_dir / "ser"
    out = [ser / "paper2_table1.md", ser / "paper2_table2.md"]
    atomic_write_text(out[0], table1(set_dir))
    atomic_write_text(out[1], table2(ser))
    utt2emo = DataDir.load(set_dir).extra("utt2emo")
    runs = [ser / "ds_dense_lstm"] + sorted((exp_dir / "paper2_fig3").glob("seg*"))
    points = [pooled_accuracy(d, utt2emo) for d in runs if (d / "meta.json").is_file()]
    if points:
        fig3(points, ser / "paper2_fig3.png")
        atomic_write_text(ser / "paper2_fig3.tsv", "segment_frames\taccuracy\n" + "".join(
            f"{n}\t{a:.4f}\n" for n, a in sorted(points)))
        out += [ser / "paper2_fig3.png", ser / "paper2_fig3.tsv"]
    return out
