"""Inference (ser.infer.recognizer) honours the exported i-vector period and the model's minimum
duration exactly.

* The period in ``model.json`` (ExportInfo.ivector_period) sets both where the online i-vector rows
  are computed (one every ``period`` frames, Kaldi's ivector-extract-online2 --ivector-period) and
  which row each input frame of the network reads (row ``t // period``).  A model exported with
  period 5 gets twice the rows of period 10, and its even rows are period 10's rows (row i of
  either uses the frames up to ``i * period``).
* A recording is long enough when it has ``left_context + right_context + 1`` MFCC frames: exactly
  that many is accepted, one sample fewer is "too short".
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from infer_data import make_system, voice
from ser.features.mfcc import MfccOptions
from ser.infer.export import ExportInfo, export_model
from ser.infer.recognizer import EmotionRecognizer
from ser.io.audio import AudioError

SAMPLE_RATE = 16000


@pytest.fixture(scope="module")
def exports(tmp_path_factory) -> dict[int, object]:
    """The same system exported with i-vector period 10 (make_system's) and 5."""
    root = tmp_path_factory.mktemp("period")
    s = make_system(root, num_wavs=2)
    five = export_model(s["final"], s["mfcc_conf"], s["extractor"], root / "export5",
                        ExportInfo("sys", corpus="tiny", ivector_period=5))
    return {10: s["export"], 5: five}


def run_recording(export, signal: np.ndarray) -> tuple[EmotionRecognizer, np.ndarray, torch.Tensor]:
    """Classify ``signal`` (one block); returns the recognizer, the online i-vector rows the
    extractor gave and the per-frame i-vectors [T_in, I] the network was given."""
    rec = EmotionRecognizer.from_dir(export, device="cpu", vad=False)
    seen: dict[str, object] = {}
    extract, net = rec.ivectors.extract, rec.net

    def spy_extract(batch):
        rows = extract(batch)
        seen["rows"] = rows[0]
        return rows

    def spy_net(x, iv):
        seen["iv"] = iv.clone()
        return net(x, iv)

    rec.ivectors.extract, rec.net = spy_extract, spy_net
    rec.classify_signal(signal, SAMPLE_RATE)
    return rec, seen["rows"], seen["iv"]


def test_online_ivector_rows_follow_the_exported_period(exports):
    signal = voice(1.5, seed=21)
    T = 1 + (signal.size - 400) // 160                      # MFCC frames (snip-edges)
    rows, given = {}, {}
    for period, export in exports.items():
        assert json.loads((export / "model.json").read_text())["ivector"]["period"] == period
        rec, rows[period], given[period] = run_recording(export, signal)
        assert rec.ivectors.opts.ivector_period == period
        assert rows[period].shape[0] == math.ceil(T / period)
        # input frame j of the network is MFCC frame j - left_context, clamped to the recording
        t = np.clip(np.arange(given[period].shape[0]) - rec.model.left_context, 0, T - 1)
        torch.testing.assert_close(given[period], torch.from_numpy(rows[period][t // period]), rtol=0, atol=0)
    np.testing.assert_allclose(rows[5][::2], rows[10], rtol=1e-5, atol=1e-5)
    odd = rows[5][1::2]                                     # rows at frames 5, 15, ...: new rows, not copies
    assert not np.allclose(odd, rows[5][::2][:len(odd)], atol=1e-5)


def test_minimum_duration_is_exact(exports):
    rec = EmotionRecognizer.from_dir(exports[10], device="cpu", vad=False)
    frames = rec.model.left_context + rec.model.right_context + 1
    assert rec.min_frames == frames == 57
    opts = MfccOptions.from_conf(exports[10] / "mfcc.conf")
    n = (frames - 1) * opts.window_shift + opts.window_size  # the fewest samples giving `frames` frames
    assert rec.min_duration == n / SAMPLE_RATE == 0.585
    signal = voice(1.0, seed=22)
    c = rec.classify_signal(signal[:n], SAMPLE_RATE)
    assert c.duration == 0.585 and np.isclose(sum(c.posteriors), 1.0)
    with pytest.raises(AudioError, match=r"too short \(0\.585 s\); the model needs at least 0\.585 s "
                                         r"\(57 frames of context\)"):
        rec.classify_signal(signal[:n - 1], SAMPLE_RATE)
