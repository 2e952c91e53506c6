"""Tests of ser.features.mfcc / kaldi_conf against kaldi-native-fbank (an independent C++ port of Kaldi)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

knf = pytest.importorskip("kaldi_native_fbank")

from ser.features.kaldi_conf import read_kaldi_conf  # noqa: E402
from ser.features.mfcc import (  # noqa: E402
    Mfcc,
    MfccOptions,
    compute_mfcc,
    first_sample_of_frame,
    num_frames,
    resample_waveform,
    vtln_warp_freq,
)

REPO = Path(__file__).resolve().parents[1]
HIRES = dict(num_mel_bins=40, num_ceps=40, low_freq=20.0, high_freq=-400.0, use_energy=False)


def knf_mfcc(wave: np.ndarray, o: MfccOptions) -> np.ndarray:
    """Reference: kaldi-native-fbank OnlineMfcc with the same options and dither 0."""
    ko = knf.MfccOptions()
    f = ko.frame_opts
    f.samp_freq = o.sample_frequency
    f.frame_shift_ms = o.frame_shift
    f.frame_length_ms = o.frame_length
    f.dither = 0.0
    f.preemph_coeff = o.preemphasis_coefficient
    f.remove_dc_offset = o.remove_dc_offset
    f.window_type = o.window_type
    f.round_to_power_of_two = o.round_to_power_of_two
    f.blackman_coeff = o.blackman_coeff
    f.snip_edges = o.snip_edges
    m = ko.mel_opts
    m.num_bins = o.num_mel_bins
    m.low_freq = o.low_freq
    m.high_freq = o.high_freq
    m.vtln_low = o.vtln_low
    m.vtln_high = o.vtln_high
    ko.num_ceps = o.num_ceps
    ko.use_energy = o.use_energy
    ko.energy_floor = o.energy_floor
    ko.raw_energy = o.raw_energy
    ko.cepstral_lifter = o.cepstral_lifter
    ko.htk_compat = o.htk_compat
    ext = knf.OnlineMfcc(ko)
    ext.accept_waveform(o.sample_frequency, wave.tolist())
    ext.input_finished()
    rows = [ext.get_frame(i) for i in range(ext.num_frames_ready)]
    return np.array(rows, dtype=np.float32).reshape(-1, o.num_ceps)


def signal(n: int, seed: int) -> np.ndarray:
    """int16-scale test signal: noise + a few tones + a DC offset, clipped like 16-bit audio."""
    rng = np.random.default_rng(seed)
    t = np.arange(n) / 16000.0
    x = rng.normal(0.0, 600.0, n) + 150.0
    for f0, amp in ((220.0 * (1 + seed % 3), 4000.0), (1234.0, 1500.0), (5100.0, 700.0)):
        x += amp * np.sin(2 * np.pi * f0 * t + seed)
    return np.clip(np.rint(x), -32768, 32767).astype(np.float32)


LENGTHS = [16000, 12345, 4000, 401, 400, 399, 170, 100]


@pytest.mark.parametrize("config", ["hires", "default"])
@pytest.mark.parametrize("snip_edges", [True, False])
def test_matches_kaldi_native_fbank(config: str, snip_edges: bool) -> None:
    extra = HIRES if config == "hires" else {}
    opts = MfccOptions(dither=0.0, snip_edges=snip_edges, **extra)
    waves = [signal(n, seed=i) for i, n in enumerate(LENGTHS)]
    ours = compute_mfcc(waves, opts)  # one batch of different lengths
    for n, wave, feats in zip(LENGTHS, waves, ours):
        ref = knf_mfcc(wave, opts)
        assert feats.shape == (ref.shape[0], opts.num_ceps), (n, feats.shape, ref.shape)
        assert feats.dtype == torch.float32
        if ref.shape[0]:
            diff = np.abs(feats.numpy() - ref).max()
            assert diff <= 1e-2, f"length {n}: max |diff| {diff}"
    # make sure the comparison was not vacuous: features carry real signal
    assert float(ours[0].abs().mean()) > 1.0


@pytest.mark.parametrize(
    "options",
    [
        dict(window_type="hamming"),
        dict(window_type="hanning"),
        dict(window_type="rectangular"),
        dict(window_type="blackman", blackman_coeff=0.4),
        dict(window_type="sine"),
        dict(raw_energy=False),
        dict(energy_floor=3.9e9),  # log = 22.08, inside the range of C0 of this signal
        dict(htk_compat=True),
        dict(htk_compat=True, use_energy=False),
        dict(round_to_power_of_two=False),
        dict(preemphasis_coefficient=0.0, remove_dc_offset=False),
        dict(cepstral_lifter=0.0, num_ceps=23),
        dict(sample_frequency=8000.0, frame_length=20.0, frame_shift=8.0, high_freq=3700.0, num_mel_bins=15),
        dict(frame_length=25.3, frame_shift=10.1, snip_edges=False),
    ],
)
def test_other_options_match_kaldi_native_fbank(options: dict) -> None:
    opts = MfccOptions(dither=0.0, **options)
    wave = signal(7000, seed=5)
    ours = compute_mfcc([wave], opts)[0].numpy()
    ref = knf_mfcc(wave, opts)
    assert ours.shape == ref.shape
    assert np.abs(ours - ref).max() <= 1e-2


def test_energy_floor_is_applied() -> None:
    wave = signal(7000, seed=5)
    plain = compute_mfcc([wave], MfccOptions(dither=0.0))[0]
    floor = float(plain[:, 0].median())
    floored = compute_mfcc([wave], MfccOptions(dither=0.0, energy_floor=math.exp(floor)))[0]
    assert torch.equal(plain[:, 1:], floored[:, 1:])
    assert (plain[:, 0] < floor - 1e-3).any()
    torch.testing.assert_close(floored[:, 0], plain[:, 0].clamp_min(floor))


def test_frame_count_formula() -> None:
    snip = MfccOptions()
    nosnip = MfccOptions(snip_edges=False)
    # hand-computed from Kaldi's NumFrames: 400-sample frames, 160-sample shift
    assert [num_frames(n, snip) for n in (0, 399, 400, 559, 560, 16000)] == [0, 0, 1, 1, 2, 98]
    assert [num_frames(n, nosnip) for n in (0, 79, 80, 239, 240, 16000, 16079, 16080)] == [0, 0, 1, 1, 2, 100, 100, 101]
    assert first_sample_of_frame(0, nosnip) == 80 - 200
    assert first_sample_of_frame(3, snip) == 480
    # and against the reference implementation, including the produced feature matrices
    for opts in (snip, nosnip):
        o = opts.replace(dither=0.0)
        for n in (1, 80, 399, 400, 401, 560, 1234, 3333):
            expected = knf_mfcc(signal(n, seed=n), o).shape[0]
            assert num_frames(n, o) == expected == o.num_frames(n)
            assert compute_mfcc([signal(n, seed=n)], o)[0].shape[0] == expected


def test_batched_equals_unbatched() -> None:
    opts = MfccOptions(dither=0.0, **HIRES)
    waves = [signal(n, seed=i) for i, n in enumerate([9000, 400, 3217, 12000, 77])]
    batched = compute_mfcc(waves, opts)
    for wave, feats in zip(waves, batched):
        single = compute_mfcc(torch.from_numpy(wave), opts)
        assert feats.shape == single.shape
        torch.testing.assert_close(feats, single, rtol=0, atol=1e-4)
    # 2-D padded input with lengths
    lengths = [w.shape[0] for w in waves]
    padded = torch.zeros(len(waves), max(lengths))
    for b, w in enumerate(waves):
        padded[b, : lengths[b]] = torch.from_numpy(w)
    out, counts = compute_mfcc(padded, opts, lengths=torch.tensor(lengths))
    assert counts.tolist() == [f.shape[0] for f in batched]
    for b, feats in enumerate(batched):
        torch.testing.assert_close(out[b, : counts[b]], feats, rtol=0, atol=1e-4)
        assert torch.count_nonzero(out[b, counts[b] :]) == 0
    # a small block size (blocks span utterance boundaries) gives the same numbers
    small = Mfcc(opts, chunk_frames=7)(waves)
    for a, b in zip(small, batched):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-4)


def test_dither_is_random_but_seedable() -> None:
    opts = MfccOptions(**HIRES)  # dither 1.0, Kaldi's default
    assert opts.dither == 1.0
    waves = [signal(5000, seed=1), signal(3000, seed=2)]
    clean = compute_mfcc(waves, opts.replace(dither=0.0))

    def run(seed: int) -> list[torch.Tensor]:
        return compute_mfcc(waves, opts, generator=torch.Generator().manual_seed(seed))

    a, b, c = run(7), run(7), run(8)
    for x, y, z, ref in zip(a, b, c, clean):
        assert torch.equal(x, y)
        assert not torch.equal(x, z)
        assert not torch.equal(x, ref)
        # dither of 1 int16 unit barely changes loud speech-like frames
        assert (x - ref).abs().mean() < 0.05
    # on a silent (all-zero) signal dither is what keeps the log-mel energies finite and non-constant
    silent = compute_mfcc([np.zeros(2000, dtype=np.float32)], opts, generator=torch.Generator().manual_seed(0))[0]
    assert torch.isfinite(silent).all() and silent[:, 0].std() > 0


def test_dither_noise_statistics() -> None:
    """The added noise is N(0, dither^2) per sample, fresh per frame, reproducible from the generator alone."""
    from ser.features.mfcc import dither_noise

    g = torch.Generator().manual_seed(3)
    noise = dither_noise(20000, 400, g, torch.device("cpu")).double()
    n = noise.numel()
    assert abs(float(noise.mean())) < 4.0 / math.sqrt(n)  # 4 sigma of the sample mean
    assert abs(float(noise.var()) - 1.0) < 4.0 * math.sqrt(2.0 / n)  # 4 sigma of the sample variance
    # frames are not copies of each other: correlation of consecutive frames' noise ~ 0
    a, b = noise[:-1].flatten(), noise[1:].flatten()
    assert abs(float(torch.corrcoef(torch.stack([a, b]))[0, 1])) < 0.01
    # same generator state -> same noise (what makes compute_mfcc_feats independent of the job split)
    again = dither_noise(20000, 400, torch.Generator().manual_seed(3), torch.device("cpu")).double()
    assert torch.equal(noise, again)
    # the dither option scales it: MFCC input noise of a silent signal has variance dither^2
    opts = MfccOptions(**HIRES).replace(dither=2.0, remove_dc_offset=False, preemphasis_coefficient=0.0,
                                        window_type="rectangular")
    ext = Mfcc(opts)
    x = ext._block([torch.zeros(5000, ext.opts.window_size)], torch.Generator().manual_seed(0)).double()
    assert abs(float(x.var()) - 4.0) < 4.0 * 4.0 * math.sqrt(2.0 / x.numel())


def test_vtln_warp_function() -> None:
    low, high, vlow, vhigh = 20.0, 7600.0, 100.0, 7100.0
    for warp in (0.85, 1.0, 1.15):
        assert vtln_warp_freq(vlow, vhigh, low, high, warp, low) == pytest.approx(low)
        assert vtln_warp_freq(vlow, vhigh, low, high, warp, high) == pytest.approx(high)
        assert vtln_warp_freq(vlow, vhigh, low, high, warp, 3000.0) == pytest.approx(3000.0 / warp)
    warped = Mfcc(MfccOptions(dither=0.0), vtln_warp=1.1)
    plain = Mfcc(MfccOptions(dither=0.0), vtln_warp=1.0)
    assert not torch.equal(warped.mel, plain.mel)
    assert torch.equal(Mfcc(MfccOptions(dither=0.0), vtln_warp=1.0).mel, plain.mel)


def test_conf_files_in_repo() -> None:
    hires = MfccOptions.from_conf(REPO / "conf" / "mfcc_hires.conf")
    assert hires == MfccOptions(**HIRES)
    lores = MfccOptions.from_conf(REPO / "conf" / "mfcc.conf")
    assert lores == MfccOptions(use_energy=False, sample_frequency=16000.0)
    assert (lores.num_mel_bins, lores.num_ceps, lores.dither) == (23, 13, 1.0)


def test_conf_parser(tmp_path: Path) -> None:
    conf = tmp_path / "x.conf"
    conf.write_text(
        "# a comment line\n\n"
        "--num-mel-bins=30   # trailing comment\n"
        "  --Snip_Edges=F\n"
        "--use-energy\n"
        "--window-type=hamming\n"
        "--num-mel-bins=32\n"
        "--low-freq=40\n"
    )
    raw = read_kaldi_conf(conf)
    assert raw == {"num-mel-bins": "32", "snip-edges": "F", "use-energy": "", "window-type": "hamming", "low-freq": "40"}
    opts = MfccOptions.from_conf(conf)
    assert (opts.num_mel_bins, opts.snip_edges, opts.use_energy, opts.window_type, opts.low_freq) == (
        32, False, True, "hamming", 40.0,
    )

    bad = tmp_path / "bad.conf"
    bad.write_text("--num-mel-bins=40\n--num-cepz=13\n")
    with pytest.raises(ValueError, match=r"bad\.conf.*--num-cepz"):
        MfccOptions.from_conf(bad)
    bad.write_text("num-mel-bins=40\n")
    with pytest.raises(ValueError, match="bad.conf"):
        MfccOptions.from_conf(bad)
    bad.write_text("--snip-edges=maybe\n")
    with pytest.raises(ValueError, match="snip-edges"):
        MfccOptions.from_conf(bad)
    bad.write_text("--num-ceps\n")
    with pytest.raises(ValueError, match="needs a value"):
        MfccOptions.from_conf(bad)
    bad.write_text("--num-ceps=50\n")  # more ceps than the 23 default mel bins
    with pytest.raises(ValueError, match=r"bad\.conf.*num-ceps"):
        MfccOptions.from_conf(bad)
    bad.write_text("--window-type=triangle\n")
    with pytest.raises(ValueError, match="window-type"):
        MfccOptions.from_conf(bad)


def test_bad_input_errors() -> None:
    opts = MfccOptions(dither=0.0)
    with pytest.raises(ValueError, match="utt1"):
        compute_mfcc([np.zeros((2, 100), dtype=np.float32)], opts, names=["utt1"])
    with pytest.raises(ValueError, match="utt2.*allow-upsample"):
        compute_mfcc([np.zeros(1000, dtype=np.float32)], opts, sample_frequency=8000, names=["utt2"])
    with pytest.raises(ValueError, match="high-freq"):
        MfccOptions(high_freq=9000.0)


def _resample_by_formula(x: np.ndarray, rate_in: int, rate_out: int, num_out: int) -> np.ndarray:
    """Independent, direct evaluation of Kaldi's LinearResample sum (feat/resample.cc) per output sample."""
    cutoff, zeros = 0.99 * 0.5 * min(rate_in, rate_out), 6
    half = zeros / (2 * cutoff)
    y = np.zeros(num_out)
    for k in range(num_out):
        t = k / rate_out
        for j in range(math.ceil((t - half) * rate_in), math.floor((t + half) * rate_in) + 1):
            if 0 <= j < len(x):
                dt = j / rate_in - t
                win = 0.5 * (1 + math.cos(2 * math.pi * cutoff / zeros * dt)) if abs(dt) < half else 0.0
                sinc = math.sin(2 * math.pi * cutoff * dt) / (math.pi * dt) if dt != 0 else 2 * cutoff
                y[k] += x[j] * sinc * win / rate_in
    return y


@pytest.mark.parametrize("rates,num_out", [((16000, 8000), 150), ((8000, 16000), 600), ((44100, 16000), 109)])
def test_resample_waveform(rates: tuple[int, int], num_out: int) -> None:
    x = np.random.default_rng(3).normal(0.0, 1000.0, 300)
    y = resample_waveform(torch.tensor(x, dtype=torch.float32), *rates)
    assert y.shape[0] == num_out  # GetNumOutputSamples: ceil(300 * out / in)
    np.testing.assert_allclose(y.numpy(), _resample_by_formula(x, *rates, num_out), atol=2e-3)
    # a tone far below both Nyquists is reproduced at the new rate (away from the edges)
    t_in = np.arange(rates[0] // 10) / rates[0]
    z = resample_waveform(torch.tensor(1000 * np.sin(2 * np.pi * 440 * t_in), dtype=torch.float32), *rates)
    expected = 1000 * np.sin(2 * np.pi * 440 * np.arange(z.shape[0]) / rates[1])
    assert np.abs(z.numpy() - expected)[40:-40].max() < 1.0


def test_allow_downsample_and_upsample() -> None:
    wave8k = signal(4000, seed=9)[::2].copy()
    strict = MfccOptions(dither=0.0)
    with pytest.raises(ValueError, match="allow-upsample"):
        compute_mfcc([wave8k], strict, sample_frequency=8000)
    opts = strict.replace(allow_upsample=True)
    got = compute_mfcc([wave8k], opts, sample_frequency=8000)[0]
    want = compute_mfcc([resample_waveform(torch.from_numpy(wave8k), 8000, 16000)], opts)[0]
    assert got.shape[0] == num_frames(4000, opts)
    torch.testing.assert_close(got, want)
    with pytest.raises(ValueError, match="allow-downsample"):
        compute_mfcc([signal(4000, seed=1)], opts, sample_frequency=32000)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_matches_cpu() -> None:
    opts = MfccOptions(dither=0.0, snip_edges=False, **HIRES)
    waves = [signal(n, seed=i) for i, n in enumerate([16000, 5000, 399])]
    cpu = compute_mfcc(waves, opts)
    gpu = compute_mfcc(waves, opts, device="cuda")
    for a, b in zip(cpu, gpu):
        assert b.device.type == "cuda"
        torch.testing.assert_close(b.cpu(), a, rtol=0, atol=1e-2)
