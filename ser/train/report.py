"""What the chain trainer writes for people: Kaldi's log lines and the training report.

* ``log/compute_prob_{train,valid}.<iter>.log`` in ``nnet3-chain-compute-prob``'s wording;
* ``train.<iter>.log``'s per-iteration objective lines (``nnet3-chain-train``'s
  "Overall average objective function" lines);
* ``report/progress.tsv`` and ``report/training_curve.png`` (train/valid chain and xent
  objectives per iteration; Kaldi's ``steps/nnet3/report/generate_plots.py`` makes the same
  plots from the logs).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

from ser.io.atomic import atomic_open, atomic_write_text

__all__ = ["compute_prob_text", "objective_lines", "max_change_lines", "write_report", "plot_training_curve"]

PROGRESS_KEYS = ("iter", "step", "fraction", "train_objf", "valid_objf", "train_xent", "valid_xent",
                 "updates", "mc_component", "mc_global")


def compute_prob_text(res: dict[str, float]) -> str:
    """nnet3-chain-compute-prob's two lines for ``{"output", "output-xent", "frames"}``."""
    return (f"Overall log-probability for 'output-xent' is {res['output-xent']:.6g} per "
            f"frame, over {int(res['frames'])} frames.\n"
            f"Overall log-probability for 'output' is {res['output']:.6g} per frame, over "
            f"{int(res['frames'])} frames.\n")


def objective_lines(sums: dict[str, float]) -> list[str]:
    """The training objectives of one iteration (sums over its minibatches) as Kaldi logs them."""
    if sums.get("frames", 0) <= 0:
        return []
    n = sums["frames"]
    return [f"Overall average objective function for 'output' is {sums['objf'] / n:.6g} over {int(n)} frames.",
            f"Overall average objective function for 'output-xent' is {sums['xent'] / n:.6g} over {int(n)} frames."] \
        + max_change_lines(sums)


def max_change_lines(sums: dict[str, float]) -> list[str]:
    """How often max-change bound in one iteration (``updates``, ``mc_component``: updates where
    some component's max-change was active, ``mc_global``: where max-param-change was)."""
    n = int(sums.get("updates", 0))
    if n <= 0:
        return []
    return [f"max-change: per-component limit active on {int(sums['mc_component'])}/{n} updates, "
            f"max-param-change on {int(sums['mc_global'])}/{n} updates."]


def write_report(history: Sequence[dict[str, float]], report_dir: str | os.PathLike) -> None:
    """``progress.tsv`` (one line per iteration) and ``training_curve.png``."""
    rep = Path(report_dir)
    lines = ["\t".join(PROGRESS_KEYS)]
    for h in history:
        lines.append("\t".join(f"{h[k]:.6g}" if k in h else "nan" for k in PROGRESS_KEYS))
    atomic_write_text(rep / "progress.tsv", "\n".join(lines) + "\n")
    plot_training_curve(history, rep / "training_curve.png", f"LF-MMI training of {rep.parent}")


def plot_training_curve(history: Sequence[dict[str, float]], path: str | os.PathLike, title: str = "") -> None:
    """PNG of the train/valid chain and xent objectives per iteration (Kaldi's report/), ``title`` above."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, kind, panel in ((axes[0], "objf", "chain log-probability ('output')"),
                            (axes[1], "xent", "cross-entropy ('output-xent')")):
        for name, style in (("train", "-o"), ("valid", "-s")):
            pts = [(h["iter"], h[f"{name}_{kind}"]) for h in history if f"{name}_{kind}" in h]
            if pts:
                ax.plot([p[0] for p in pts], [p[1] for p in pts], style, label=name, markersize=3)
        ax.set_xlabel("iteration")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel("per frame (nats)")
        ax.set_title(panel)
        ax.grid(True, alpha=0.3)
        if ax.get_legend_handles_labels()[0]:  # a run killed before its first diagnostics has none
            ax.legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_open(path, "wb") as f:
        fig.savefig(f, format="png", dpi=100)
    plt.close(fig)
