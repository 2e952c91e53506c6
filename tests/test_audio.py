"""wav.scp rxfilenames and segment cutting (ser.io.audio); bad audio is in test_bad_input.py."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from ser.features.perturb import sox_effects
from ser.io.audio import AudioError, AudioStats, cut_segment, iter_utterance_audio, read_rxfile
from ser.io.datadir import DataDir, Segment

from conftest import tone


def test_plain_sph2pipe_and_volume(tmp_path):
    x = tone(1.0)
    sf.write(tmp_path / "a.sph", x, 16000, format="NIST", subtype="PCM_16")
    y, fs = read_rxfile(f"sph2pipe -f wav -p {tmp_path}/a.sph |")
    assert fs == 16000 and y.shape == (16000, 1)
    np.testing.assert_array_equal(y[:, 0], x.astype(np.float32))  # int16 units, as Kaldi
    v, _ = read_rxfile(f"sph2pipe -f wav -p {tmp_path}/a.sph | sox --vol 0.5 -t wav - -t wav - |", effects=sox_effects)
    np.testing.assert_allclose(v[:, 0], 0.5 * x, rtol=1e-6)
    v2, _ = read_rxfile(f"sox --vol 0.25 -t wav {tmp_path}/a.sph -t wav - |", effects=sox_effects)
    np.testing.assert_allclose(v2[:, 0], 0.25 * x, rtol=1e-6)


def test_rate_channels_empty_and_segments(tmp_path):
    sf.write(tmp_path / "r8k.wav", tone(2.0, fs=8000), 8000, subtype="PCM_16")
    st = np.stack([tone(2.0), tone(2.0, f0=440)], axis=1)
    sf.write(tmp_path / "st.wav", st, 16000, subtype="PCM_16")
    sf.write(tmp_path / "empty.wav", np.zeros(0, np.int16), 16000, subtype="PCM_16")
    sf.write(tmp_path / "long.wav", tone(3.0), 16000, subtype="PCM_16")
    d = DataDir(
        utt2spk={"a-r8k": "a", "a-st": "a", "b-empty": "b"},
        wav={"a-r8k": str(tmp_path / "r8k.wav"), "a-st": str(tmp_path / "st.wav"), "b-empty": str(tmp_path / "empty.wav")},
    )
    stats = AudioStats()
    out = dict(iter_utterance_audio(d, 16000, stats, effects=sox_effects))
    assert set(out) == {"a-r8k", "a-st"}
    assert abs(out["a-r8k"].shape[0] - 32000) <= 2  # resampled to 16 kHz
    np.testing.assert_array_equal(out["a-st"], st[:, 0].astype(np.float32))  # channel 0
    assert stats.counts == {"resampled": 1, "multichannel_used_channel0": 1, "empty_audio_skipped": 1}

    seg = DataDir(
        utt2spk={"r-1": "r", "r-2": "r", "r-3": "r", "r-4": "r"},
        wav={"r": str(tmp_path / "long.wav")},
        segments={"r-1": Segment("r", 0.5, 1.25), "r-2": Segment("r", 2.5, 3.3),   # 0.3 s past end: truncated
                  "r-3": Segment("r", 2.0, 4.0),                                   # 1 s past: skipped
                  "r-4": Segment("r", 1.0, 1.05)},                                 # shorter than 0.1 s: skipped
    )
    stats = AudioStats()
    out = dict(iter_utterance_audio(seg, 16000, stats, effects=sox_effects))
    assert set(out) == {"r-1", "r-2"}
    assert out["r-1"].shape[0] == int(1.25 * 16000 + 0.5) - int(0.5 * 16000 + 0.5)
    assert out["r-2"].shape[0] == 48000 - 40000
    assert stats.counts == {"segment_past_end_skipped": 1, "segment_too_short_skipped": 1}
    assert cut_segment(np.zeros(16000, np.float32), 16000, 0.0, 0.5, "u") is not None


def test_speed_pipe_as_sox(tmp_path):
    """``sox ... speed f``: f times shorter, every frequency f times higher."""
    sf.write(tmp_path / "a.sph", tone(2.0, f0=1000.0), 16000, format="NIST", subtype="PCM_16")
    y, fs = read_rxfile(f"sph2pipe -f wav -p {tmp_path}/a.sph | sox -t wav - -t wav - speed 1.1 |", effects=sox_effects)
    assert fs == 16000 and abs(y.shape[0] - round(32000 / 1.1)) <= 1
    spec = np.abs(np.fft.rfft(y[:, 0]))
    assert abs(np.argmax(spec) * fs / y.shape[0] - 1100.0) < 5.0
    z, _ = read_rxfile(f"sox -t wav {tmp_path}/a.sph -t wav - speed 0.9 |", effects=sox_effects)
    assert abs(z.shape[0] - round(32000 / 0.9)) <= 1


def test_effects_come_from_the_caller(tmp_path):
    """ser.io reads a perturbed entry only with the caller's effects function (ser.features.perturb's):
    without it the entry is a one-line error naming the command, not audio read unperturbed."""
    sf.write(tmp_path / "a.wav", tone(1.0), 16000, subtype="PCM_16")
    rx = f"sox -t wav {tmp_path}/a.wav -t wav - speed 0.9 |"
    with pytest.raises(AudioError, match="speed 0.9"):
        read_rxfile(rx)
    assert abs(read_rxfile(rx, effects=sox_effects)[0].shape[0] - 16000 / 0.9) <= 1
    plain, _ = read_rxfile(f"sox -t wav {tmp_path}/a.wav -t wav - |")  # no effect: nothing to apply
    assert plain.shape[0] == 16000
