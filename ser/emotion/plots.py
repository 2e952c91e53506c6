"""Figures of an emotion system's training (pure: data in, PNG out)."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from ser.io.atomic import atomic_open


def plot_curve(history: Sequence[dict[str, float]], best_epoch: int, path: Path, title: str = "",
               num_classes: int | None = None) -> None:
    """``training_curve.png`` of one (system, fold): frame cross-entropy (left) and accuracies in %, on 0-100
    in every fold (right), per epoch (valid.json's epoch numbers, integer ticks); the chance level of UA
    (100 / ``num_classes`` %: any constant or random decision) and the selected epoch (best validation UA,
    ties to the better frame accuracy: ser.emotion.trainer) named in a legend below both panels; ``title``
    (e.g. ``tdnn_l12, fold Ses01``) above them."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    ep = [h["epoch"] for h in history]
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4.8))
    # one legend below both panels: the same colour is the same data (train / validation) in both
    handles = a.plot(ep, [h["train_loss"] for h in history], "o-", label="train (loss, frame accuracy)")
    handles += a.plot(ep, [h["valid_loss"] for h in history], "s-", label="validation (loss, frame accuracy)")
    a.set(xlabel="epoch", ylabel="frame cross-entropy (nats)", title="loss")
    b.plot(ep, [100 * h["train_frame_acc"] for h in history], "o-")
    b.plot(ep, [100 * h["valid_frame_acc"] for h in history], "s-")
    handles += b.plot(ep, [100 * h["valid_ua"] for h in history], "^-", label="validation utterance UA")
    b.set(xlabel="epoch", ylabel="accuracy (%)", title="accuracy", ylim=(0, 100))   # the same scale in every fold
    if best_epoch >= 0:
        best = next((h for h in history if h["epoch"] == best_epoch), None)
        ua = f" {100 * best['valid_ua']:.1f}%" if best else ""
        for ax in (a, b):
            line = ax.axvline(best_epoch, color="grey", ls="--", lw=1)
        line.set_label(f"selected: epoch {best_epoch} (best validation UA{ua}; ties: frame accuracy)")
        handles.append(line)
    if num_classes:
        handles.append(b.axhline(100 / num_classes, color="black", ls=":", lw=1,
                                 label=f"chance UA (1/{num_classes} = {100 / num_classes:.0f}%)"))
    for ax in (a, b):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    fig.legend(handles=handles, loc="lower center", ncol=3, fontsize=9, frameon=False)
    if title:
        fig.suptitle(title)
    fig.tight_layout(rect=(0, 0.1, 1, 1))
    with atomic_open(path, "wb") as f:
        fig.savefig(f, format="png", dpi=100)
    plt.close(fig)
