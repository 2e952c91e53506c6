"""Every PNG the recipe writes (issue 28, point 5): the plotting functions are pure (data in, PNG out); each
smoke test checks the file and what its axes say (titles, units, legends, integer epochs)."""

from __future__ import annotations

from pathlib import Path

import matplotlib
import numpy as np
import pytest

matplotlib.use("Agg")

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def figures(monkeypatch):
    """The figures the functions close (they save and close their own): inspected after the PNG is written."""
    import matplotlib.pyplot as plt

    closed, close = [], plt.close

    def keep(fig=None):
        closed.append(fig)
        close(fig)

    monkeypatch.setattr(plt, "close", keep)
    return closed


def _texts(fig) -> list[str]:
    out = [t.get_text() for ax in fig.axes for t in ax.texts]
    legends = [ax.get_legend() for ax in fig.axes] + list(fig.legends)
    out += [t.get_text() for lg in legends if lg is not None for t in lg.get_texts()]
    return out


def test_confusion_matrix(tmp_path, figures):
    from ser.eval.scoring import confusion_title, write_confusion_png

    res = {"system": "tdnn_l12", "set": "iemocap_4cls_exc", "protocol": "session",
           "folds": [{}] * 5, "pooled": {"n": 8}}
    title = confusion_title(res)
    assert title == ("tdnn_l12: iemocap_4cls_exc, leave one session out, 5 folds\n"
                     "row % of the 8 test utterances of the 5 folds (count)")
    write_confusion_png(tmp_path / "c.png", np.array([[3, 1, 0], [0, 4, 0], [0, 0, 0]]), ["ang", "hap", "sad"], title)
    assert (tmp_path / "c.png").read_bytes()[:8] == PNG
    fig = figures[-1]
    ax, cbar = fig.axes                                  # the matrix and its colorbar
    assert ax.get_title() == title and cbar.get_ylabel() == "% of the true class"
    cells = _texts(fig)
    assert "75.0%\n(3)" in cells and "25.0%\n(1)" in cells and "100.0%\n(4)" in cells
    assert cells.count("n/a") == 3                       # no 'sad' utterance: no row percentage
    assert [t.get_text() for t in ax.get_yticklabels()] == ["ang (4)", "hap (4)", "sad (0)"]
    xc = confusion_title({**res, "protocol": "trained on A, tested on B", "folds": [{}]})
    assert xc == "tdnn_l12: iemocap_4cls_exc, trained on A, tested on B\nrow % of the 8 test utterances (count)"


def test_emotion_training_curve(tmp_path, figures):
    from ser.emotion.plots import plot_curve

    hist = [{"epoch": e, "train_loss": 1.3 - 0.1 * e, "valid_loss": 1.25 - 0.05 * e, "train_frame_acc": 0.4 + 0.05 * e,
             "valid_frame_acc": 0.42 + 0.02 * e, "valid_ua": [0.40, 0.47, 0.45][e]} for e in range(3)]
    plot_curve(hist, 1, tmp_path / "t.png", "tdnn_l12, fold Ses01", 4)
    assert (tmp_path / "t.png").read_bytes()[:8] == PNG
    fig = figures[-1]
    assert fig._suptitle.get_text() == "tdnn_l12, fold Ses01"
    loss, acc = fig.axes
    assert acc.get_ylabel() == "accuracy (%)" and acc.get_ylim() == (0, 100)
    ua = [line for line in acc.get_lines() if line.get_label() == "validation utterance UA"]
    np.testing.assert_allclose(ua[0].get_ydata(), [40, 47, 45])   # percent, not fractions
    for ax in (loss, acc):
        ticks = [t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
        assert ticks and all(float(t).is_integer() for t in ticks)
    legend = _texts(fig)
    assert "selected: epoch 1 (best validation UA 47.0%; ties: frame accuracy)" in legend
    assert "chance UA (1/4 = 25%)" in legend
    assert [line.get_ydata()[0] for line in acc.get_lines() if line.get_linestyle() == ":"] == [25.0]


def test_chain_training_curve(tmp_path, figures):
    from ser.train.report import plot_training_curve

    hist = [{"iter": i, "train_objf": -0.1 + 0.01 * i, "valid_objf": -0.12 + 0.01 * i,
             "train_xent": -3 + 0.2 * i, "valid_xent": -3.1 + 0.2 * i} for i in range(5)]
    plot_training_curve(hist, tmp_path / "r" / "training_curve.png", "LF-MMI training of exp/chain/tdnn")
    assert (tmp_path / "r" / "training_curve.png").read_bytes()[:8] == PNG
    fig = figures[-1]
    assert fig._suptitle.get_text() == "LF-MMI training of exp/chain/tdnn"
    assert [ax.get_title() for ax in fig.axes] == ["chain log-probability ('output')", "cross-entropy ('output-xent')"]
    assert all(float(t).is_integer() for ax in fig.axes for t in ax.get_xticks())


def test_level_meter_against_numpy():
    from ser.infer.timeline import LevelMeter

    rng = np.random.default_rng(0)
    x = 16384 * np.sin(2 * np.pi * 1000 * np.arange(16000 + 77) / 16000) * (rng.random(16077) > 0.5)
    meter = LevelMeter(16000)
    blocks = [x[:1234], x[1234:1234], x[1234:9000], x[9000:]]     # odd sizes, an empty block
    assert all(a is b for a, b in zip(meter(iter(blocks)), blocks))   # passed through unchanged
    hop = 160
    ref = [np.mean(x[i:i + hop] ** 2) for i in range(0, len(x), hop)]
    np.testing.assert_allclose(meter.level_db(), 10 * np.log10(np.maximum(ref, 1e-30) / 32768.0 ** 2), rtol=1e-9)
    full = LevelMeter(16000)
    list(full([16384 * np.sin(2 * np.pi * 1000 * np.arange(1600) / 16000)]))
    np.testing.assert_allclose(full.level_db(), 20 * np.log10(0.5 / np.sqrt(2)), atol=1e-6)   # -9.03 dBFS


def test_timeline(tmp_path, figures):
    from ser.infer.timeline import LEVEL_PERIOD, Timeline

    post = np.tile([[0.7, 0.2, 0.1]], (9, 1))
    post[5:] = [0.1, 0.2, 0.7]
    tl = Timeline("rec.wav", ["ang", "hap", "sad"], 0.5 * np.arange(9), post, 2.0, 0.5, 6.0)
    tl.write_png(tmp_path / "a.png", ["ang", "hap(exc)", "sad"])
    fig = figures[-1]
    assert len(fig.axes) == 1 and "2 s windows every 0.5 s" in fig.axes[0].get_title()
    legend = fig.axes[0].get_legend()
    assert [t.get_text() for t in legend.get_texts()] == ["ang", "hap(exc)", "sad", "shading: decided class"]
    assert legend.get_texts()[0].get_fontsize() >= 10
    tl.level = np.full(int(6.0 / LEVEL_PERIOD), -20.0)
    tl.write_png(tmp_path / "b.png")
    assert (tmp_path / "b.png").read_bytes()[:8] == PNG
    fig = figures[-1]
    top, strip = fig.axes
    assert strip.get_ylabel() == "level (dBFS)" and strip.get_xlabel() == "time (s)"
    assert top.get_xlim() == strip.get_xlim()
    one = Timeline("short.wav", ["ang", "hap", "sad"], np.zeros(1), post[:1], 2.0, 0.5, 1.5)
    one.write_png(tmp_path / "c.png")    # one window: a line over the whole recording, not an invisible point
    ax = figures[-1].axes[0]
    assert "one window, the whole recording" in ax.get_title()
    assert list(ax.get_lines()[0].get_xdata()) == [0.0, 1.5]


def test_paper2_fig3(tmp_path, figures):
    from matplotlib.ticker import NullLocator

    from ser.emotion.paper2_tables import fig3

    fig3([(80, 0.4), (5, 0.5), (20, 0.45)], tmp_path / "f.png")
    assert (tmp_path / "f.png").read_bytes()[:8] == PNG
    ax = figures[-1].axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["5", "20", "80"]
    assert isinstance(ax.xaxis.get_minor_locator(), NullLocator)
    assert ax.get_ylabel() == "accuracy (%)" and "segment length" in ax.get_title()
