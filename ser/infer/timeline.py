"""Emotion over time: class posteriors in sliding windows, and the segments they decide.

Window ``w`` covers ``[w * shift, w * shift + window)`` seconds; its posterior is the mean of
the softmaxes of the network's output frames inside it (paper 1's utterance decision applied
to the window; one output frame every 30 ms) and its class the argmax (ties to the first
label).  The windows are computed from one pass of the network over the recording
(ser.infer.recognizer), not one pass per window, so every frame has the context of the whole
recording around it.  A recording shorter than one window has one window over all of it.

Segments: each window stands for the ``shift`` seconds around its centre (the first one from
0, the last one to the end of the recording); consecutive windows with the same class make one
segment (``start``, ``end``, ``label`` and the mean posterior of each class over its windows).

With speech detection (the frames' speech mask, ser.infer.vad), a window's posterior is the mean over
its frames of speech, and a window where fewer than half of the frames are speech is left unlabelled:
posteriors NaN, label ``no_speech`` in the segments (empty posterior fields in the CSV), shaded grey
in the PNG (:func:`shade_no_speech`).
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass

import numpy as np
import torch

from ser.io.atomic import atomic_open

NO_SPEECH = "no_speech"  # the label of a recording or timeline segment without speech
MIN_SPEECH_FRACTION = 0.5  # a window with fewer frames of speech is left unlabelled


def window_posteriors(post: torch.Tensor, frame_period: float, window: float, shift: float,
                      duration: float, speech: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(starts [W] seconds, mean frame posterior [W, K]) of the sliding windows; with ``speech`` [n]
    (bool per frame) the mean over the frames of speech, NaN where they are under half the window's."""
    if window <= 0 or shift <= 0:
        raise ValueError(f"window ({window}) and shift ({shift}) must be positive")
    n = post.shape[0]
    num = max(1, int(np.floor((duration - window) / shift + 1e-9)) + 1)
    starts = shift * np.arange(num)
    t = frame_period * np.arange(n)  # time of output frame j
    lo = np.searchsorted(t, starts - 1e-9)
    hi = np.maximum(np.searchsorted(t, starts + window - 1e-9), lo + 1).clip(max=n)
    lo = np.minimum(lo, hi - 1)
    w = np.ones(n) if speech is None else speech.astype(np.float64)
    csum = np.concatenate([np.zeros((1, post.shape[1])), np.cumsum(post.double().numpy() * w[:, None], 0)])
    cnt = np.concatenate([[0.0], np.cumsum(w)])
    k = cnt[hi] - cnt[lo]
    with np.errstate(invalid="ignore", divide="ignore"):
        out = (csum[hi] - csum[lo]) / k[:, None]
    out[k < MIN_SPEECH_FRACTION * (hi - lo)] = np.nan
    return starts, out


LEVEL_PERIOD = 0.01      # seconds per value of the level strip (Kaldi's frame shift)
LEVEL_FLOOR_DB = -90.0   # the strip's floor (digital silence is -inf dBFS)


class LevelMeter:
    """Passes 16 kHz mono sample blocks (int16 units, as the recognizer reads them) through and keeps the RMS
    level of every LEVEL_PERIOD seconds in dB relative to full scale (32768): :attr:`Timeline.level`."""

    def __init__(self, sample_rate: int = 16000) -> None:
        self.hop = int(round(sample_rate * LEVEL_PERIOD))
        self.mean_squares: list[np.ndarray] = []
        self.rest = np.zeros(0)

    def __call__(self, blocks):
        for x in blocks:
            y = np.concatenate([self.rest, np.asarray(x, dtype=np.float64).reshape(-1)])
            n = len(y) // self.hop * self.hop
            self.mean_squares.append((y[:n].reshape(-1, self.hop) ** 2).mean(1))
            self.rest = y[n:]
            yield x

    def level_db(self) -> np.ndarray:
        ms = self.mean_squares + ([np.array([(self.rest ** 2).mean()])] if len(self.rest) else [])
        ms = np.concatenate(ms) if ms else np.zeros(0)
        return 10 * np.log10(np.maximum(ms, 1e-30) / 32768.0 ** 2)


@dataclass
class Segment:
    start: float
    end: float
    label: str
    posteriors: list[float]


@dataclass
class Timeline:
    """Sliding-window posteriors of one recording and the segments they decide."""

    id: str
    labels: list[str]
    starts: np.ndarray       # [W] seconds
    posteriors: np.ndarray   # [W, K]
    window: float
    shift: float
    duration: float
    level: np.ndarray | None = None   # signal level, dBFS every LEVEL_PERIOD s (LevelMeter): write_png's strip

    @classmethod
    def from_frames(cls, fp, labels: list[str], window: float = 2.0, shift: float = 0.5) -> "Timeline":
        """From :class:`ser.infer.recognizer.FramePosteriors` (its speech mask, if any)."""
        starts, post = window_posteriors(fp.posteriors, fp.frame_period, window, shift, fp.duration,
                                         getattr(fp, "speech", None))
        return cls(fp.id, list(labels), starts, post, window, shift, fp.duration)

    @property
    def decisions(self) -> np.ndarray:
        """Class index of every window (argmax; numpy's ties go to the first label); -1: no speech."""
        unlabelled = np.isnan(self.posteriors).any(1)
        return np.where(unlabelled, -1, np.nan_to_num(self.posteriors, nan=-1.0).argmax(1))

    def segments(self) -> list[Segment]:
        w = len(self.starts)
        mid = self.starts + min(self.window, self.duration) / 2
        bounds = np.concatenate([[0.0], np.clip(mid[1:] - self.shift / 2, 0, None), [self.duration]])
        dec, out, a = self.decisions, [], 0
        for b in range(1, w + 1):
            if b == w or dec[b] != dec[a]:
                out.append(Segment(float(bounds[a]), float(bounds[b]),
                                   NO_SPEECH if dec[a] < 0 else self.labels[dec[a]],
                                   self.posteriors[a:b].mean(0).tolist()))
                a = b
        return out

    def write_csv(self, path) -> None:
        """``start,end,label,p_<label>...`` one row per segment (seconds, 3 decimals; posteriors empty
        where there is no speech)."""
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(["start", "end", "label"] + [f"p_{x}" for x in self.labels])
        for s in self.segments():
            w.writerow([f"{s.start:.3f}", f"{s.end:.3f}", s.label]
                       + ["" if s.label == NO_SPEECH else f"{p:.4f}" for p in s.posteriors])
        with atomic_open(path) as f:
            f.write(buf.getvalue())

    def write_png(self, path, shown: list[str] | None = None) -> None:
        """Posterior of each class over the window centres, the decided class shaded behind them, and below,
        when :attr:`level` is set, the signal level (dBFS every LEVEL_PERIOD s: where the silences are).
        ``shown``: the legend's class names (an export's ``shown_labels``, ser.eval.classes), default the
        labels."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.patches import Patch

        colours = plt.get_cmap("tab10").colors
        names = shown or self.labels
        minutes = self.duration > 600
        scale = 60.0 if minutes else 1.0
        t = (self.starts + min(self.window, self.duration) / 2) / scale
        strip = self.level is not None and len(self.level) > 0
        fig, axes = plt.subplots(2 if strip else 1, 1, figsize=(12, 4.6 if strip else 3.6), sharex=True, squeeze=False,
                                 gridspec_kw={"height_ratios": [3, 1]} if strip else None)
        ax = axes[0, 0]
        segs = self.segments()
        for s in segs:
            if s.label != NO_SPEECH:
                ax.axvspan(s.start / scale, s.end / scale, color=colours[self.labels.index(s.label) % 10],
                           alpha=0.15, lw=0)
        shade_no_speech(ax, [(s.start / scale, s.end / scale) for s in segs if s.label == NO_SPEECH])
        x, post = t, self.posteriors
        if len(t) == 1:   # one window (a recording shorter than it, or as long): its posterior over all of it
            x, post = np.array([0.0, self.duration / scale]), np.repeat(post, 2, axis=0)
        for k, lab in enumerate(names):
            ax.plot(x, post[:, k], color=colours[k % 10], lw=1.5, label=lab)
        ax.set(xlim=(0, self.duration / scale), ylim=(0, 1), ylabel="posterior",
               title=f"{self.id}: emotion posteriors of " + (f"{self.window:g} s windows every {self.shift:g} s"
                                                             if len(t) > 1 else "one window, the whole recording"))
        handles = ax.get_legend_handles_labels()[0]
        handles.append(Patch(color="grey", alpha=0.3, label="shading: decided class"))
        ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=10, frameon=False)
        if strip:
            lt = LEVEL_PERIOD * (np.arange(len(self.level)) + 0.5) / scale
            lv = np.maximum(self.level, LEVEL_FLOOR_DB)
            axes[1, 0].fill_between(lt, LEVEL_FLOOR_DB, lv, color="0.35", lw=0)
            axes[1, 0].set(ylim=(LEVEL_FLOOR_DB, 0), ylabel="level (dBFS)")
        axes[-1, 0].set_xlabel("time (min)" if minutes else "time (s)")
        fig.tight_layout()
        with atomic_open(path, "wb") as f:
            fig.savefig(f, format="png", dpi=100)
        plt.close(fig)


def shade_no_speech(ax, spans: list[tuple[float, float]]) -> None:
    """Non-speech spans (x units of the axes) shaded grey and hatched, with one legend entry."""
    for i, (a, b) in enumerate(spans):
        ax.axvspan(a, b, facecolor="0.85", edgecolor="0.6", hatch="//", lw=0, label="no speech" if i == 0 else None)
