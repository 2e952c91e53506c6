"""Tests of ser.features.perturb (sox speed / volume perturbation, perturb_volume.py factor draws)."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from ser.features.perturb import (
    SPEED_FACTORS,
    draw_volume_factors,
    speed_perturb,
    to_int16,
    volume_perturb,
)

FS = 16000


def tone(freq: float, seconds: float, amp: float = 8000.0) -> np.ndarray:
    t = np.arange(int(seconds * FS)) / FS
    return amp * np.sin(2 * np.pi * freq * t)


def peak_frequency(x: np.ndarray, fs: float = FS) -> float:
    """Frequency of the strongest spectral peak (Hann window, 16x zero padding, parabolic interpolation)."""
    n = len(x)
    spec = np.abs(np.fft.rfft(x * np.hanning(n), n=16 * n))
    k = int(np.argmax(spec))
    a, b, c = np.log(spec[k - 1 : k + 2])
    k_frac = k + 0.5 * (a - c) / (a - 2 * b + c)
    return k_frac * fs / (16 * n)


@pytest.mark.parametrize("factor", [0.9, 1.1])
def test_speed_changes_length_and_pitch(factor: float) -> None:
    x = tone(1000.0, 1.0) + tone(2500.0, 1.0, amp=2000.0)
    y = speed_perturb(x, factor, FS)
    assert abs(len(y) - len(x) / factor) <= 1.0
    # sox speed: the signal is replayed at fs*factor, so every frequency is multiplied by factor
    assert peak_frequency(x) == pytest.approx(1000.0, abs=0.5)
    assert peak_frequency(y) == pytest.approx(1000.0 * factor, abs=1.0)
    # amplitude is kept (high-quality band-limited resampling, no gain): compare RMS in the middle
    mid = slice(len(y) // 4, 3 * len(y) // 4)
    assert np.sqrt(np.mean(y[mid] ** 2)) == pytest.approx(np.sqrt(np.mean(x ** 2)), rel=0.01)


def test_speed_is_resampling_of_the_continuous_signal() -> None:
    # speed f of a band-limited signal s(t) is s(f t): compare with the analytic tone at the new times
    f0, factor = 440.0, 0.9
    x = tone(f0, 0.5)
    y = speed_perturb(x.astype(np.float32), factor, FS)
    assert y.dtype == np.float32
    t = np.arange(len(y)) / FS
    expected = 8000.0 * np.sin(2 * np.pi * f0 * factor * t)
    mid = slice(200, len(y) - 200)  # away from the filter's edge transients
    assert np.max(np.abs(y[mid] - expected[mid])) < 8000.0 * 1e-4  # linear phase, no delay


def test_speed_one_is_identity_and_inputs() -> None:
    x = tone(300.0, 0.1)
    assert SPEED_FACTORS == (0.9, 1.0, 1.1)
    y = speed_perturb(x, 1.0)
    assert np.array_equal(x, y) and y is not x
    assert np.array_equal(speed_perturb(torch.from_numpy(x), 1.0), x)
    with pytest.raises(ValueError, match="reco1"):
        speed_perturb(x, 0.0, name="reco1")
    with pytest.raises(ValueError, match="reco2"):
        speed_perturb(np.zeros((2, 10)), 0.9, name="reco2")


def test_volume_scaling_exact_and_clipped() -> None:
    rng = np.random.default_rng(0)
    x = np.rint(rng.normal(0, 3000, 5000))
    y = volume_perturb(x, 0.37)
    assert np.array_equal(y, x * 0.37)
    z = volume_perturb(np.array([20000.0, -20000.0, 100.0]), 2.0)
    assert z.tolist() == [32767.0, -32768.0, 200.0]
    assert volume_perturb(np.array([20000.0]), 2.0, clip=False).tolist() == [40000.0]
    assert to_int16(np.array([1.4, -1.6, 40000.0, -40000.0])).tolist() == [1, -2, 32767, -32768]


def test_volume_factors_like_perturb_volume_py() -> None:
    recos = ["reco-a", "reco-b", "sp0.9-reco-a", "sp1.1-reco-a"]
    # perturb_volume.py: random.seed(0); one random.uniform(0.125, 2) per wav.scp line, in order
    state = random.getstate()
    random.seed(0)
    expected = [random.uniform(0.125, 2) for _ in recos]
    random.setstate(state)
    before = random.random()
    random.setstate(state)
    got = draw_volume_factors(recos)
    assert list(got) == recos
    assert list(got.values()) == expected
    assert all(0.125 <= v <= 2.0 for v in got.values())
    assert random.random() == before  # global random state untouched
    assert list(draw_volume_factors(recos[:2]).values()) == expected[:2]
    with pytest.raises(ValueError, match="reco-a"):
        draw_volume_factors(["reco-a", "reco-a"])
