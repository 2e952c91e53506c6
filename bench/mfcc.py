#!/usr/bin/env python3
"""Benchmark: batched ser.features.mfcc against kaldi-native-fbank (C++ port of Kaldi) on the same audio.

Generates seeded int16-scale audio (default 20 files x 30 s at 16 kHz), computes MFCCs with the given
Kaldi config (default conf/mfcc_hires.conf, dither 0 so both do identical work) and prints, for each
torch thread count, the best-of-N seconds, x real time, and the speed ratio against kaldi-native-fbank
measured in the same run. Also checks the two agree (max |diff|).

    .venv/bin/python bench/mfcc.py                       # CPU, torch 1 thread and 2 threads
    .venv/bin/python bench/mfcc.py --device cuda         # also time on the GPU
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ser.features.mfcc import Mfcc, MfccOptions  # noqa: E402


def make_audio(num_files: int, seconds: float, fs: int, seed: int) -> list[np.ndarray]:
    """Speech-like test audio: harmonic tones with a wandering pitch, amplitude modulation and noise."""
    rng = np.random.default_rng(seed)
    waves = []
    for _ in range(num_files):
        n = int(seconds * fs)
        t = np.arange(n) / fs
        f0 = 120.0 + 40.0 * np.sin(2 * np.pi * 0.3 * t + rng.uniform(0, 6.3))
        phase = 2 * np.pi * np.cumsum(f0) / fs
        x = sum(np.sin(k * phase) / k for k in range(1, 12)) * 5000.0
        x *= 0.5 + 0.5 * np.abs(np.sin(2 * np.pi * 2.0 * t + rng.uniform(0, 6.3)))
        x += rng.normal(0.0, 300.0, n)
        waves.append(np.clip(np.rint(x), -32768, 32767).astype(np.float32))
    return waves


def knf_options(opts: MfccOptions):
    import kaldi_native_fbank as knf

    ko = knf.MfccOptions()
    f = ko.frame_opts
    f.samp_freq = opts.sample_frequency
    f.frame_shift_ms = opts.frame_shift
    f.frame_length_ms = opts.frame_length
    f.dither = opts.dither
    f.preemph_coeff = opts.preemphasis_coefficient
    f.remove_dc_offset = opts.remove_dc_offset
    f.window_type = opts.window_type
    f.round_to_power_of_two = opts.round_to_power_of_two
    f.blackman_coeff = opts.blackman_coeff
    f.snip_edges = opts.snip_edges
    m = ko.mel_opts
    m.num_bins = opts.num_mel_bins
    m.low_freq = opts.low_freq
    m.high_freq = opts.high_freq
    m.vtln_low = opts.vtln_low
    m.vtln_high = opts.vtln_high
    ko.num_ceps = opts.num_ceps
    ko.use_energy = opts.use_energy
    ko.energy_floor = opts.energy_floor
    ko.raw_energy = opts.raw_energy
    ko.cepstral_lifter = opts.cepstral_lifter
    ko.htk_compat = opts.htk_compat
    return ko


def run_knf(lists: list[list[float]], ko, fs: float) -> list[np.ndarray]:
    import kaldi_native_fbank as knf

    out = []
    for samples in lists:
        ext = knf.OnlineMfcc(ko)
        ext.accept_waveform(fs, samples)
        ext.input_finished()
        out.append(np.array([ext.get_frame(i) for i in range(ext.num_frames_ready)], dtype=np.float32))
    return out


def best_of(fn, repeats: int, sync=lambda: None) -> float:
    times = []
    for _ in range(repeats):
        sync()
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--mfcc-config", default=str(Path(__file__).resolve().parents[1] / "conf" / "mfcc_hires.conf"))
    p.add_argument("--num-files", type=int, default=20)
    p.add_argument("--seconds", type=float, default=30.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--repeats", type=int, default=5, help="best of N")
    p.add_argument("--threads", default="1,2", help="comma-separated torch thread counts for the CPU runs")
    p.add_argument("--device", default="cpu", help="cpu or cuda (cuda: CPU runs plus a GPU run)")
    p.add_argument("--chunk-frames", type=int, default=None, help="frames per block (default: Mfcc's)")
    args = p.parse_args()

    opts = MfccOptions.from_conf(args.mfcc_config).replace(dither=0.0)
    fs = opts.sample_frequency
    waves = make_audio(args.num_files, args.seconds, int(fs), args.seed)
    audio_s = sum(len(w) for w in waves) / fs
    print(f"audio: {args.num_files} files x {args.seconds:g} s = {audio_s:g} s; config {args.mfcc_config} "
          f"(dither 0); torch {torch.__version__}; best of {args.repeats}")

    lists = [w.tolist() for w in waves]  # conversion for knf's Python API done outside the timing
    ko = knf_options(opts)
    ref = run_knf(lists, ko, fs)
    t_knf = best_of(lambda: run_knf(lists, ko, fs), args.repeats)
    print(f"kaldi-native-fbank (1 thread):  {t_knf:8.4f} s  {audio_s / t_knf:9.0f}x real time")

    default_threads = torch.get_num_threads()
    for nt in [int(x) for x in args.threads.split(",") if x]:
        torch.set_num_threads(nt)
        ext = Mfcc(opts, device="cpu", chunk_frames=args.chunk_frames)
        ours = ext(waves)
        diff = max(float(np.abs(a.numpy() - b).max()) for a, b in zip(ours, ref))
        t = best_of(lambda: ext(waves), args.repeats)
        print(f"ser mfcc cpu ({nt} thread{'s' if nt > 1 else ''}):   {t:8.4f} s  {audio_s / t:9.0f}x real time  "
              f"{t_knf / t:6.2f}x kaldi-native-fbank  (max |diff| {diff:.1e})")
    conf_dither = MfccOptions.from_conf(args.mfcc_config).dither
    if conf_dither != 0.0:  # the real setting: dither noise drawn per frame sample
        torch.set_num_threads(1)
        ext = Mfcc(opts.replace(dither=conf_dither), device="cpu", chunk_frames=args.chunk_frames)
        gen = torch.Generator().manual_seed(0)
        t = best_of(lambda: ext(waves, generator=gen), args.repeats)
        print(f"ser mfcc cpu (1 thread, dither {conf_dither:g} as in the config): {t:8.4f} s  {audio_s / t:9.0f}x real time  "
              f"{t_knf / t:6.2f}x kaldi-native-fbank (dither 0)")
    torch.set_num_threads(default_threads)

    if args.device.startswith("cuda"):
        if not torch.cuda.is_available():
            print("cuda: not available on this machine")
            return
        dev = torch.device(args.device)
        ext = Mfcc(opts, device=dev, chunk_frames=args.chunk_frames)
        ours = ext(waves)  # includes warm-up (kernels, cuFFT plans)
        diff = max(float(np.abs(a.cpu().numpy() - b).max()) for a, b in zip(ours, ref))
        sync = lambda: torch.cuda.synchronize(dev)  # noqa: E731
        t = best_of(lambda: ext(waves), args.repeats, sync)
        gpu_waves = [torch.from_numpy(w).to(dev) for w in waves]
        t_res = best_of(lambda: ext(gpu_waves), args.repeats, sync)
        print(f"ser mfcc {args.device} (from host arrays):   {t:8.4f} s  {audio_s / t:9.0f}x real time  "
              f"{t_knf / t:6.2f}x kaldi-native-fbank  (max |diff| {diff:.1e})")
        print(f"ser mfcc {args.device} (audio already on GPU): {t_res:8.4f} s  {audio_s / t_res:9.0f}x real time  "
              f"{t_knf / t_res:6.2f}x kaldi-native-fbank")


if __name__ == "__main__":
    main()
