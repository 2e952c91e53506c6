"""Kaldi-compatible MFCC, batched, in PyTorch (CPU and CUDA).

Mirrors (same option names, same numbers):

* ``src/feat/feature-window.{h,cc}`` — ``FrameExtractionOptions``, ``NumFrames``, ``FirstSampleOfFrame``,
  ``FeatureWindowFunction``, ``ExtractWindow`` (reflection at the edges with ``--snip-edges=false``),
  ``ProcessWindow`` (dither → DC removal → raw log-energy → pre-emphasis → window → zero-pad);
* ``src/feat/mel-computations.{h,cc}`` — ``MelBanksOptions``, ``MelBanks`` (incl. the VTLN warp),
  ``ComputeLifterCoeffs``;
* ``src/feat/feature-mfcc.{h,cc}`` — ``MfccOptions``, ``MfccComputer::Compute``;
* ``src/matrix/matrix-functions.cc`` — ``ComputeDctMatrix``;
* ``src/feat/feature-common-inl.h`` — ``OfflineFeatureTpl::Compute`` (sample-rate check).

Input waveforms are in int16 scale (Kaldi's wave reader does not scale to [-1, 1]).

Deviations from Kaldi:

* dither noise is not drawn afresh per sample (Kaldi's ``RandGauss``): each frame adds a window of a fixed
  pool of 2^18 standard-normal samples (:func:`dither_pool`, seeded once) at a uniformly random offset drawn
  from the caller's ``torch.Generator`` (per utterance in ``compute_mfcc_feats``). Within a frame the noise
  is i.i.d. N(0, dither^2) as in Kaldi; two frames share noise only where their windows of the pool overlap
  (chance ~0.3% per pair). Drawing 400 Gaussians per frame cost more than the MFCC itself (``bench/mfcc.py``);
  a row gather costs ~1/7 of it;
* everything is computed in float32 with ``torch.fft.rfft`` (Kaldi: float32 split-radix FFT); the mel,
  window and DCT tables are built in float64 and rounded to float32; results agree with
  kaldi-native-fbank to ~1e-3;
* the (unregistered, HTK-only) ``MelBanksOptions::htk_mode`` is not offered;
* ``--max-feature-vectors`` (online-only memory option) and ``--debug-mel`` are accepted and ignored;
* none in the resampling used with ``--allow-downsample``/``--allow-upsample``: :func:`resample_waveform`
  mirrors ``src/feat/resample.cc`` (``ResampleWaveform``: ``LinearResample`` with a Hann-windowed sinc,
  6 zeros, cut-off 0.99 · Nyquist of the lower rate), computed as one matmul over strided windows.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Union

import numpy as np
import torch

from ser.features.kaldi_conf import OptionValue, parse_kaldi_value, read_kaldi_conf

__all__ = [
    "WINDOW_TYPES",
    "MfccOptions",
    "Mfcc",
    "compute_mfcc",
    "num_frames",
    "first_sample_of_frame",
    "feature_window",
    "mel_banks",
    "dct_matrix",
    "lifter_coeffs",
    "mel_scale",
    "inverse_mel_scale",
    "vtln_warp_freq",
    "resample_waveform",
]

WINDOW_TYPES = ("hamming", "hanning", "povey", "rectangular", "sine", "blackman")
FLT_EPSILON = float(np.finfo(np.float32).eps)  # std::numeric_limits<float>::epsilon()

WaveLike = Union[np.ndarray, torch.Tensor, Sequence[float]]


@dataclass(frozen=True)
class MfccOptions:
    """All options of Kaldi's ``compute-mfcc-feats`` feature extractor, with Kaldi's defaults.

    Python field ``x_y`` is Kaldi option ``--x-y`` (see :meth:`kaldi_names`).
    """

    # FrameExtractionOptions (src/feat/feature-window.h)
    sample_frequency: float = 16000.0
    frame_shift: float = 10.0  # ms
    frame_length: float = 25.0  # ms
    dither: float = 1.0
    preemphasis_coefficient: float = 0.97
    remove_dc_offset: bool = True
    window_type: str = "povey"
    round_to_power_of_two: bool = True
    blackman_coeff: float = 0.42
    snip_edges: bool = True
    allow_downsample: bool = False
    allow_upsample: bool = False
    max_feature_vectors: int = -1
    # MelBanksOptions (src/feat/mel-computations.h)
    num_mel_bins: int = 23
    low_freq: float = 20.0
    high_freq: float = 0.0  # <= 0: offset from Nyquist
    vtln_low: float = 100.0
    vtln_high: float = -500.0  # < 0: offset from Nyquist
    debug_mel: bool = False
    # MfccOptions (src/feat/feature-mfcc.h)
    num_ceps: int = 13
    use_energy: bool = True
    energy_floor: float = 0.0
    raw_energy: bool = True
    cepstral_lifter: float = 22.0
    htk_compat: bool = False

    def __post_init__(self) -> None:
        if self.window_type not in WINDOW_TYPES:
            raise ValueError(f"invalid --window-type={self.window_type} (expected one of {', '.join(WINDOW_TYPES)})")
        if self.sample_frequency <= 0:
            raise ValueError(f"invalid --sample-frequency={self.sample_frequency}")
        if self.window_shift <= 0 or self.window_size <= 0:
            raise ValueError(
                f"--frame-shift={self.frame_shift} / --frame-length={self.frame_length} give "
                f"{self.window_shift} / {self.window_size} samples; both must be positive"
            )
        if self.window_size < 2:
            raise ValueError(f"--frame-length={self.frame_length} gives a window of {self.window_size} sample(s)")
        if self.padded_window_size % 2 != 0:
            raise ValueError(
                f"padded window size {self.padded_window_size} is odd; use --round-to-power-of-two=true "
                "or an even frame length"
            )
        if not 0.0 <= self.preemphasis_coefficient <= 1.0:
            raise ValueError(f"--preemphasis-coefficient={self.preemphasis_coefficient} must be in [0, 1]")
        if self.num_mel_bins < 3:
            raise ValueError(f"--num-mel-bins={self.num_mel_bins}: must have at least 3 mel bins")
        if not 1 <= self.num_ceps <= self.num_mel_bins:
            raise ValueError(
                f"--num-ceps={self.num_ceps} must be between 1 and --num-mel-bins={self.num_mel_bins}"
            )
        nyquist = 0.5 * self.sample_frequency
        high = self.effective_high_freq
        if not (0.0 <= self.low_freq < nyquist and 0.0 < high <= nyquist and high > self.low_freq):
            raise ValueError(
                f"bad values in options: --low-freq={self.low_freq} and --high-freq={self.high_freq} "
                f"(= {high} Hz) with Nyquist {nyquist} Hz"
            )

    # ---- derived sizes (FrameExtractionOptions::WindowShift/WindowSize/PaddedWindowSize) ----
    @property
    def window_shift(self) -> int:
        """Frame shift in samples: int(samp_freq * 0.001 * frame_shift_ms), Kaldi's float arithmetic."""
        return int(float(np.float32(self.sample_frequency)) * 0.001 * float(np.float32(self.frame_shift)))

    @property
    def window_size(self) -> int:
        """Frame length in samples."""
        return int(float(np.float32(self.sample_frequency)) * 0.001 * float(np.float32(self.frame_length)))

    @property
    def padded_window_size(self) -> int:
        """FFT size: the frame length, rounded up to a power of two with --round-to-power-of-two."""
        n = self.window_size
        if self.round_to_power_of_two:
            return 1 << (n - 1).bit_length()
        return n

    @property
    def effective_high_freq(self) -> float:
        """--high-freq in Hz (values <= 0 are relative to Nyquist)."""
        return self.high_freq if self.high_freq > 0.0 else 0.5 * self.sample_frequency + self.high_freq

    @property
    def dim(self) -> int:
        """Output feature dimension (= --num-ceps)."""
        return self.num_ceps

    def num_frames(self, num_samples: int) -> int:
        """Kaldi's NumFrames(num_samples, opts, flush=true)."""
        return num_frames(num_samples, self)

    # ---- conversion from/to Kaldi option names ----
    @staticmethod
    def kaldi_names() -> dict[str, str]:
        """Kaldi option name → dataclass field name."""
        return {f.name.replace("_", "-"): f.name for f in dataclasses.fields(MfccOptions)}

    @staticmethod
    def kaldi_types() -> dict[str, type]:
        """Kaldi option name → Python type (for :func:`read_kaldi_conf`)."""
        types = {"float": float, "int": int, "bool": bool, "str": str}
        return {
            f.name.replace("_", "-"): (f.type if isinstance(f.type, type) else types[str(f.type)])
            for f in dataclasses.fields(MfccOptions)
        }

    @classmethod
    def from_dict(cls, options: Mapping[str, OptionValue], source: str = "<options>") -> "MfccOptions":
        """Build from ``{kaldi-name: value}`` (values already typed, or strings); unknown names raise ValueError."""
        names = cls.kaldi_names()
        types = cls.kaldi_types()
        kwargs: dict[str, OptionValue] = {}
        for key, value in options.items():
            kname = key.replace("_", "-").lower()
            if kname not in names:
                raise ValueError(f"{source}: unknown option --{kname}")
            kind = types[kname]
            if isinstance(value, str) and kind is not str:
                value = parse_kaldi_value(value, kind, option=kname, source=source)
            elif kind is float and isinstance(value, (int, float)) and not isinstance(value, bool):
                value = float(value)
            kwargs[names[kname]] = value
        try:
            return cls(**kwargs)  # type: ignore[arg-type]
        except ValueError as err:
            raise ValueError(f"{source}: {err}") from None

    @classmethod
    def from_conf(cls, path: Union[str, Path]) -> "MfccOptions":
        """Read a Kaldi MFCC option file (e.g. ``conf/mfcc_hires.conf``); unknown options raise ValueError."""
        values = read_kaldi_conf(path, cls.kaldi_types())
        return cls.from_dict(values, source=str(path))

    def replace(self, **changes: OptionValue) -> "MfccOptions":
        """A copy with some fields changed (Python field names)."""
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------------
# Frame geometry (feature-window.cc)


def num_frames(num_samples: int, opts: MfccOptions) -> int:
    """Number of frames Kaldi outputs for ``num_samples`` samples (NumFrames with flush=true)."""
    shift, length = opts.window_shift, opts.window_size
    if opts.snip_edges:
        return 0 if num_samples < length else 1 + (num_samples - length) // shift
    return (num_samples + shift // 2) // shift


def first_sample_of_frame(frame: int, opts: MfccOptions) -> int:
    """Index of the first sample of frame ``frame`` (negative at the start with --snip-edges=false)."""
    shift = opts.window_shift
    if opts.snip_edges:
        return frame * shift
    return shift * frame + shift // 2 - opts.window_size // 2


def _reflect(index: torch.Tensor, n: int) -> torch.Tensor:
    """Map sample indices outside [0, n) back inside by repeated reflection (-1 → 0, n → n-1)."""
    r = torch.remainder(index, 2 * n)
    return torch.where(r < n, r, 2 * n - 1 - r)


# --------------------------------------------------------------------------------------------------
# Tables: window, mel banks, DCT, lifter


def feature_window(opts: MfccOptions) -> torch.Tensor:
    """FeatureWindowFunction: the analysis window (float64, length = frame length in samples)."""
    n = opts.window_size
    i = torch.arange(n, dtype=torch.float64)
    a = 2.0 * math.pi / (n - 1)
    wt = opts.window_type
    if wt == "hanning":
        return 0.5 - 0.5 * torch.cos(a * i)
    if wt == "sine":
        return torch.sin(0.5 * a * i)
    if wt == "hamming":
        return 0.54 - 0.46 * torch.cos(a * i)
    if wt == "povey":
        return (0.5 - 0.5 * torch.cos(a * i)).pow(0.85)
    if wt == "rectangular":
        return torch.ones(n, dtype=torch.float64)
    if wt == "blackman":
        c = opts.blackman_coeff
        return c - 0.5 * torch.cos(a * i) + (0.5 - c) * torch.cos(2.0 * a * i)
    raise ValueError(f"invalid --window-type={wt}")


def mel_scale(freq: float) -> float:
    """Kaldi MelScale: 1127 ln(1 + f/700)."""
    return 1127.0 * math.log(1.0 + freq / 700.0)


def inverse_mel_scale(mel: float) -> float:
    """Kaldi InverseMelScale: 700 (exp(m/1127) - 1)."""
    return 700.0 * (math.exp(mel / 1127.0) - 1.0)


def vtln_warp_freq(
    vtln_low_cutoff: float, vtln_high_cutoff: float, low_freq: float, high_freq: float, warp: float, freq: float
) -> float:
    """MelBanks::VtlnWarpFreq: piecewise-linear VTLN warp with F(low)=low, F(high)=high, F(f)=f/warp inside."""
    if freq < low_freq or freq > high_freq:
        return freq
    lo = vtln_low_cutoff * max(1.0, warp)
    hi = vtln_high_cutoff * min(1.0, warp)
    scale = 1.0 / warp
    f_lo, f_hi = scale * lo, scale * hi
    if not (lo > low_freq and hi < high_freq):
        raise ValueError(
            f"VTLN cut-offs {vtln_low_cutoff}/{vtln_high_cutoff} Hz incompatible with warp {warp} and "
            f"--low-freq {low_freq} / --high-freq {high_freq}"
        )
    if freq < lo:
        return low_freq + (f_lo - low_freq) / (lo - low_freq) * (freq - low_freq)
    if freq < hi:
        return scale * freq
    return high_freq + (high_freq - f_hi) / (high_freq - hi) * (freq - high_freq)


def mel_banks(opts: MfccOptions, vtln_warp: float = 1.0) -> torch.Tensor:
    """MelBanks: triangular filters as a float64 matrix of shape (padded_window_size//2 + 1, num_mel_bins).

    Row i is FFT bin i (frequency i·fs/N); the last row (Nyquist) is zero, as Kaldi never uses that bin.
    """
    num_bins = opts.num_mel_bins
    n_pad = opts.padded_window_size
    num_fft_bins = n_pad // 2
    fs = opts.sample_frequency
    nyquist = 0.5 * fs
    low, high = opts.low_freq, opts.effective_high_freq
    mel_low, mel_high = mel_scale(low), mel_scale(high)
    delta = (mel_high - mel_low) / (num_bins + 1)
    vtln_low = opts.vtln_low
    vtln_high = opts.vtln_high + nyquist if opts.vtln_high < 0.0 else opts.vtln_high
    if vtln_warp != 1.0 and (
        vtln_low < 0.0 or vtln_low <= low or vtln_low >= high or vtln_high <= 0.0 or vtln_high >= high
        or vtln_high <= vtln_low
    ):
        raise ValueError(
            f"bad values in options: --vtln-low={vtln_low} and --vtln-high={vtln_high}, versus "
            f"--low-freq={low} and --high-freq={high}"
        )

    def warp(mel: float) -> float:
        if vtln_warp == 1.0:
            return mel
        return mel_scale(vtln_warp_freq(vtln_low, vtln_high, low, high, vtln_warp, inverse_mel_scale(mel)))

    fft_mel = np.array([mel_scale(fs / n_pad * i) for i in range(num_fft_bins)])
    out = np.zeros((num_fft_bins + 1, num_bins), dtype=np.float64)
    for b in range(num_bins):
        left, center, right = (warp(mel_low + k * delta) for k in (b, b + 1, b + 2))
        up = (fft_mel > left) & (fft_mel <= center)
        down = (fft_mel > center) & (fft_mel < right)
        out[:num_fft_bins, b][up] = (fft_mel[up] - left) / (center - left)
        out[:num_fft_bins, b][down] = (right - fft_mel[down]) / (right - center)
        if not (up | down).any():
            raise ValueError(
                f"mel bin {b} is empty: --num-mel-bins={num_bins} too large for the FFT size {n_pad} "
                f"between {low} and {high} Hz"
            )
    return torch.from_numpy(out)


def dct_matrix(num_ceps: int, num_bins: int) -> torch.Tensor:
    """ComputeDctMatrix (first ``num_ceps`` rows): orthonormal DCT-II, float64, shape (num_ceps, num_bins)."""
    k = torch.arange(num_ceps, dtype=torch.float64)[:, None]
    n = torch.arange(num_bins, dtype=torch.float64)[None, :]
    m = math.sqrt(2.0 / num_bins) * torch.cos(math.pi / num_bins * (n + 0.5) * k)
    m[0, :] = math.sqrt(1.0 / num_bins)
    return m


def lifter_coeffs(num_ceps: int, cepstral_lifter: float) -> torch.Tensor:
    """ComputeLifterCoeffs: 1 + Q/2 sin(pi i / Q); all ones when Q == 0 (no liftering)."""
    if cepstral_lifter == 0.0:
        return torch.ones(num_ceps, dtype=torch.float64)
    i = torch.arange(num_ceps, dtype=torch.float64)
    return 1.0 + 0.5 * cepstral_lifter * torch.sin(math.pi * i / cepstral_lifter)


# --------------------------------------------------------------------------------------------------
# The extractor


DITHER_POOL_SIZE = 1 << 18


@functools.lru_cache(maxsize=None)
def dither_pool(device: torch.device) -> torch.Tensor:
    """The fixed pool of standard-normal samples the dither windows are cut from (same on every device),
    standardised to mean 0 and variance 1 exactly, so that no pool-wide offset biases every frame."""
    pool = torch.randn(DITHER_POOL_SIZE, generator=torch.Generator().manual_seed(0x5EED), dtype=torch.float64)
    return ((pool - pool.mean()) / pool.std()).to(device, torch.float32)


def dither_noise(num_frames: int, frame_length: int, generator: torch.Generator | None,
                 device: torch.device) -> torch.Tensor:
    """(num_frames, frame_length) standard-normal noise: one pool window per frame at a random offset."""
    pool = dither_pool(torch.device(device))
    if frame_length > pool.numel():
        raise ValueError(f"frame length {frame_length} exceeds the dither pool ({pool.numel()} samples)")
    offsets = torch.randint(0, pool.numel() - frame_length + 1, (num_frames,), generator=generator,
                            device=pool.device)
    return pool.unfold(0, frame_length, 1).index_select(0, offsets)


class Mfcc:
    """MFCC extractor holding its window, mel-bank and (liftered) DCT tables on ``device``.

    ``Mfcc(opts, device)(waves)`` computes features for a batch; see :meth:`__call__`.
    """

    def __init__(
        self,
        opts: MfccOptions | None = None,
        device: Union[str, torch.device] = "cpu",
        vtln_warp: float = 1.0,
        chunk_frames: int | None = None,
    ) -> None:
        self.opts = opts if opts is not None else MfccOptions()
        self.device = torch.device(device)
        self.vtln_warp = float(vtln_warp)
        # frames per block: cache-sized on CPU (fastest measured: 512-2048), large on GPUs
        if chunk_frames is None:
            chunk_frames = 1024 if self.device.type == "cpu" else 65536
        if chunk_frames < 1:
            raise ValueError(f"chunk_frames must be positive, got {chunk_frames}")
        self.chunk_frames = int(chunk_frames)
        o = self.opts
        self.window = feature_window(o).to(self.device, torch.float32)
        self.mel = mel_banks(o, self.vtln_warp).to(self.device, torch.float32)
        dct = dct_matrix(o.num_ceps, o.num_mel_bins) * lifter_coeffs(o.num_ceps, o.cepstral_lifter)[:, None]
        self.dct = dct.t().contiguous().to(self.device, torch.float32)  # (num_mel_bins, num_ceps), liftered
        self.log_energy_floor = math.log(o.energy_floor) if o.energy_floor > 0.0 else None
        self._buf: torch.Tensor | None = None  # the reused zero-padded FFT block (see _padded_buffer)

    @property
    def dim(self) -> int:
        return self.opts.num_ceps

    def num_frames(self, num_samples: int) -> int:
        return num_frames(num_samples, self.opts)

    # ---- public entry point ----
    def __call__(
        self,
        waves: Union[torch.Tensor, Sequence[WaveLike]],
        lengths: Union[torch.Tensor, Sequence[int], None] = None,
        generator: torch.Generator | None = None,
        sample_frequency: float | None = None,
        names: Sequence[str] | None = None,
    ):
        """Compute MFCCs of a batch of int16-scale waveforms.

        Args:
            waves: a list of 1-D waveforms (numpy arrays or tensors, any lengths), or a 1-D tensor/array
                (one waveform), or a 2-D tensor/array (batch, max_samples) padded on the right.
            lengths: for a 2-D tensor, the number of valid samples of each row (default: all).
            generator: torch.Generator for the dither noise (on ``self.device``); None = global RNG.
            sample_frequency: rate of the input (default: --sample-frequency). Another rate is an error
                unless --allow-upsample / --allow-downsample allow resampling it (resample_waveform).
            names: optional utterance ids, used only in error messages.

        Returns:
            list input → list of float32 tensors (num_frames_i, num_ceps) on ``self.device``;
            1-D tensor/array → one (num_frames, num_ceps) tensor;
            2-D tensor/array → (feats (batch, max_frames, num_ceps) zero-padded, num_frames (batch,) int64).
        """
        o = self.opts
        if isinstance(waves, np.ndarray):
            waves = torch.from_numpy(waves)
        if sample_frequency is not None and float(sample_frequency) != float(o.sample_frequency):
            fs = float(sample_frequency)
            if not ((fs < o.sample_frequency and o.allow_upsample) or (fs > o.sample_frequency and o.allow_downsample)):
                who = f" ({names[0]}{', ...' if len(names) > 1 else ''})" if names else ""
                raise ValueError(
                    f"waveform sample frequency {fs:g} differs from --sample-frequency={o.sample_frequency:g}{who} "
                    "(use --allow-upsample=true / --allow-downsample=true to resample)"
                )
            if isinstance(waves, torch.Tensor) and waves.dim() == 2:
                lens = [waves.shape[1]] * waves.shape[0] if lengths is None else [int(x) for x in lengths]
                waves = [waves[b, : lens[b]] for b in range(waves.shape[0])]
                lengths = None
            if isinstance(waves, torch.Tensor):
                waves = resample_waveform(self._tensor(waves), fs, o.sample_frequency)
            else:
                waves = [resample_waveform(self._tensor(w), fs, o.sample_frequency) for w in waves]
        if isinstance(waves, torch.Tensor) and waves.dim() == 1:
            return self._compute([waves.to(self.device, torch.float32)], generator)[0]
        if isinstance(waves, torch.Tensor):
            if waves.dim() != 2:
                raise ValueError(f"waves must be 1-D or 2-D, got shape {tuple(waves.shape)}")
            batch = waves.to(self.device, torch.float32)
            if lengths is None:
                lens = [batch.shape[1]] * batch.shape[0]
            else:
                lens = [int(x) for x in (lengths.tolist() if isinstance(lengths, torch.Tensor) else lengths)]
            if len(lens) != batch.shape[0] or any(not 0 <= x <= batch.shape[1] for x in lens):
                raise ValueError(f"lengths {lens} do not fit waves of shape {tuple(batch.shape)}")
            feats = self._compute([batch[b, : lens[b]] for b in range(len(lens))], generator)
            counts = torch.tensor([f.shape[0] for f in feats], dtype=torch.int64)
            out = torch.zeros(len(feats), int(counts.max()) if len(feats) else 0, o.num_ceps, device=self.device)
            for b, f in enumerate(feats):
                out[b, : f.shape[0]] = f
            return out, counts
        wav_list = []
        for i, w in enumerate(waves):
            t = self._tensor(w)
            if t.dim() != 1:
                who = names[i] if names else f"item {i}"
                raise ValueError(f"{who}: waveform must be 1-D (one channel), got shape {tuple(t.shape)}")
            wav_list.append(t)
        return self._compute(wav_list, generator)

    # ---- implementation ----
    def _tensor(self, wave: WaveLike) -> torch.Tensor:
        """A float32 tensor on self.device (no copy if it already is one)."""
        t = wave if isinstance(wave, torch.Tensor) else torch.as_tensor(np.asarray(wave, dtype=np.float32))
        return t.to(self.device, torch.float32)

    def _frames(self, wave: torch.Tensor) -> torch.Tensor:
        """All frames of one waveform as a (num_frames, frame_length) view or copy (ExtractWindow)."""
        o = self.opts
        n = wave.shape[0]
        t = num_frames(n, o)
        length, shift = o.window_size, o.window_shift
        if t == 0:
            return wave.new_zeros(0, length)
        if o.snip_edges:
            return wave.unfold(0, length, shift)[:t]
        start = first_sample_of_frame(0, o)
        end = first_sample_of_frame(t - 1, o) + length
        parts = []
        if start < 0:
            parts.append(wave[_reflect(torch.arange(start, min(0, end), device=wave.device), n)])
        parts.append(wave[max(start, 0) : min(end, n)])
        if end > n:
            parts.append(wave[_reflect(torch.arange(max(n, start), end, device=wave.device), n)])
        padded = torch.cat(parts) if len(parts) > 1 else parts[0]
        return padded.unfold(0, length, shift)[:t]

    def _compute(self, waves: list[torch.Tensor], generator: torch.Generator | None) -> list[torch.Tensor]:
        """Frames of all waveforms are processed together, in cache-sized blocks of ``chunk_frames`` rows.

        A block may span several utterances; frames are copied from the (strided) per-utterance views
        only into the block, never into one large framed copy of the whole batch.
        """
        o = self.opts
        frames = [self._frames(w) for w in waves]
        counts = [f.shape[0] for f in frames]
        total = sum(counts)
        out = torch.empty(total, o.num_ceps, device=self.device)
        pending: list[torch.Tensor] = []
        pending_n = 0
        pos = 0
        for f in frames:
            start = 0
            while start < f.shape[0]:
                take = min(self.chunk_frames - pending_n, f.shape[0] - start)
                pending.append(f[start : start + take])
                pending_n += take
                start += take
                if pending_n == self.chunk_frames:
                    out[pos : pos + pending_n] = self._process(self._block(pending, generator))
                    pos += pending_n
                    pending, pending_n = [], 0
        if pending_n:
            out[pos : pos + pending_n] = self._process(self._block(pending, generator))
        return list(torch.split(out, counts))

    def _block(self, pieces: list[torch.Tensor], generator: torch.Generator | None) -> torch.Tensor:
        """Copy frame views into one contiguous block and add the dither (Dither in feature-window.cc)."""
        x = torch.cat(pieces) if len(pieces) > 1 else pieces[0].clone()
        if self.opts.dither != 0.0:
            x.add_(dither_noise(x.shape[0], x.shape[1], generator, x.device), alpha=self.opts.dither)
        return x

    def _padded_buffer(self, n: int, device: torch.device) -> torch.Tensor:
        """A reused (n, padded_window_size) block whose zero padding is written once, not per block."""
        buf = self._buf
        if buf is None or buf.shape[0] < n or buf.device != device:
            buf = self._buf = torch.zeros(max(n, self.chunk_frames), self.opts.padded_window_size, device=device)
        return buf[:n]

    def _process(self, x: torch.Tensor) -> torch.Tensor:
        """ProcessWindow + MfccComputer::Compute for a (n, frame_length) block of (dithered) frames."""
        o = self.opts
        n, length = x.shape
        if o.remove_dc_offset:
            x = x.sub_(x.mean(dim=1, keepdim=True))  # x is a private block (see _block)
        energy = None
        if o.use_energy and o.raw_energy:
            energy = (x * x).sum(dim=1).clamp_min(FLT_EPSILON).log()
        buf = self._padded_buffer(n, x.device)
        c = o.preemphasis_coefficient
        if c != 0.0:
            torch.add(x[:, 1:], x[:, :-1], alpha=-c, out=buf[:, 1:length])
            buf[:, 0] = x[:, 0] * (1.0 - c)
        else:
            buf[:, :length] = x
        buf[:, :length] *= self.window
        if o.use_energy and not o.raw_energy:
            energy = (buf * buf).sum(dim=1).clamp_min(FLT_EPSILON).log()
        spec = torch.fft.rfft(buf, dim=1)
        power = spec.real.square().addcmul_(spec.imag, spec.imag)  # (n, N/2 + 1); Nyquist row of self.mel is 0
        mel = (power @ self.mel).clamp_min_(FLT_EPSILON).log_()
        ceps = mel @ self.dct
        if energy is not None:
            if self.log_energy_floor is not None:
                energy = energy.clamp_min(self.log_energy_floor)
            ceps[:, 0] = energy
        if o.htk_compat:
            c0 = ceps[:, 0] if o.use_energy else ceps[:, 0] * math.sqrt(2.0)
            ceps = torch.cat([ceps[:, 1:], c0[:, None]], dim=1)
        return ceps


# --------------------------------------------------------------------------------------------------
# Resampling for --allow-downsample / --allow-upsample (feat/resample.cc)


def _resample_num_output_samples(num_in: int, rate_in: int, rate_out: int) -> int:
    """LinearResample::GetNumOutputSamples with flush=true."""
    tick = rate_in * rate_out // math.gcd(rate_in, rate_out)
    ticks = num_in * (tick // rate_in)
    if ticks <= 0:
        return 0
    per_out = tick // rate_out
    last = ticks // per_out
    if last * per_out == ticks:
        last -= 1
    return last + 1


@functools.lru_cache(maxsize=8)
def _resample_filter(rate_in: int, rate_out: int, cutoff: float, num_zeros: int) -> tuple[torch.Tensor, int, int, int]:
    """Polyphase weights of LinearResample::SetIndexesAndWeights, as a (out_unit, width) float64 matrix.

    Row i holds the weights of output phase i, aligned so that column 0 is input sample
    ``unit·in_unit + offset``. Returns (weights, offset, in_unit, out_unit).
    """
    g = math.gcd(rate_in, rate_out)
    in_unit, out_unit = rate_in // g, rate_out // g
    half_width = num_zeros / (2.0 * cutoff)
    firsts, rows = [], []
    for i in range(out_unit):
        t_out = i / rate_out
        first = math.ceil((t_out - half_width) * rate_in)
        last = math.floor((t_out + half_width) * rate_in)
        j = np.arange(first, last + 1)
        dt = j / rate_in - t_out
        window = np.where(np.abs(dt) < half_width, 0.5 * (1.0 + np.cos(2 * math.pi * cutoff / num_zeros * dt)), 0.0)
        safe = np.where(dt == 0.0, 1.0, dt)
        filt = np.where(dt == 0.0, 2.0 * cutoff, np.sin(2 * math.pi * cutoff * safe) / (math.pi * safe))
        firsts.append(first)
        rows.append((filt * window / rate_in).astype(np.float32).astype(np.float64))  # Kaldi stores floats
    offset = min(firsts)
    width = max(f + len(r) for f, r in zip(firsts, rows)) - offset
    weights = torch.zeros(out_unit, width, dtype=torch.float64)
    for i, (f, r) in enumerate(zip(firsts, rows)):
        weights[i, f - offset : f - offset + len(r)] = torch.from_numpy(r)
    return weights, offset, in_unit, out_unit


def resample_waveform(wave: torch.Tensor, orig_freq: float, new_freq: float) -> torch.Tensor:
    """Kaldi ``ResampleWaveform``: band-limited resampling of a 1-D waveform (rates truncated to integers).

    Output sample k is the input convolved with a Hann-windowed sinc (6 zeros, cut-off
    0.99 · min(orig, new) / 2) at time k / new_freq; samples outside the input count as zero.
    """
    rate_in, rate_out = int(orig_freq), int(new_freq)
    if rate_in <= 0 or rate_out <= 0:
        raise ValueError(f"bad sample rates for resampling: {orig_freq} -> {new_freq}")
    if rate_in == rate_out:
        return wave.clone()
    weights, offset, in_unit, out_unit = _resample_filter(rate_in, rate_out, 0.99 * 0.5 * min(rate_in, rate_out), 6)
    n_out = _resample_num_output_samples(wave.shape[0], rate_in, rate_out)
    if n_out == 0:
        return wave.new_zeros(0)
    width = weights.shape[1]
    num_units = -(-n_out // out_unit)
    pad_left = max(0, -offset)
    need = (num_units - 1) * in_unit + offset + pad_left + width
    pad_right = max(0, need - pad_left - wave.shape[0])
    padded = torch.nn.functional.pad(wave[None], (pad_left, pad_right))[0]
    start = offset + pad_left
    windows = padded[start:].unfold(0, width, in_unit)[:num_units]  # (num_units, width)
    out = windows @ weights.to(wave.device, wave.dtype).t()  # (num_units, out_unit)
    return out.reshape(-1)[:n_out]


@functools.lru_cache(maxsize=16)
def _cached_extractor(opts: MfccOptions, device: str, vtln_warp: float) -> Mfcc:
    return Mfcc(opts, device=device, vtln_warp=vtln_warp)


def compute_mfcc(
    waves: Union[torch.Tensor, Sequence[WaveLike]],
    opts: MfccOptions | None = None,
    lengths: Union[torch.Tensor, Sequence[int], None] = None,
    device: Union[str, torch.device] = "cpu",
    generator: torch.Generator | None = None,
    vtln_warp: float = 1.0,
    sample_frequency: float | None = None,
    names: Sequence[str] | None = None,
):
    """Kaldi ``compute-mfcc-feats`` on a batch of int16-scale waveforms; see :meth:`Mfcc.__call__`.

    The extractor tables are cached per (opts, device, vtln_warp).
    """
    extractor = _cached_extractor(opts if opts is not None else MfccOptions(), str(torch.device(device)), float(vtln_warp))
    return extractor(waves, lengths=lengths, generator=generator, sample_frequency=sample_frequency, names=names)
