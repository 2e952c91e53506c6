"""Signal side of Kaldi's speed and volume perturbation (data augmentation for the ASR training set).

Mirrors:

* ``egs/wsj/s5/utils/perturb_data_dir_speed.sh`` (via ``utils/data/perturb_data_dir_speed_3way.sh``):
  each recording is piped through ``sox -t wav - -t wav - speed <factor>`` with factors 0.9, 1.0, 1.1.
  sox ``speed f`` reinterprets the signal as recorded at ``fs·f`` and resamples it back to ``fs`` with
  its ``rate`` effect (default quality ``-h``): tempo and pitch both scale by ``f``, and the length by
  ``1/f``. Here the resampling is libsoxr (the library behind sox's ``rate``) at quality ``HQ``.
* ``egs/wsj/s5/utils/data/internal/perturb_volume.py``: one factor per recording,
  ``random.uniform(0.125, 2)`` after ``random.seed(0)``, drawn for every line of wav.scp in order,
  applied with ``sox --vol <factor>``.

Deviations: sox writes 16-bit output and, by default, adds TPDF dither when it requantises; these
functions return float samples (int16 scale) without requantising. ``clip=True`` (default) reproduces
sox's clipping to the int16 range; :func:`to_int16` rounds and clips if 16-bit samples are wanted.
The data-directory side (``sp0.9-`` prefixes, segments, utt2dur) is not here.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import TYPE_CHECKING, Union

import numpy as np
import soxr

if TYPE_CHECKING:  # torch is not imported at run time: the data-dir steps that draw factors start faster
    import torch

__all__ = [
    "SPEED_FACTORS",
    "VOLUME_SCALE_LOW",
    "VOLUME_SCALE_HIGH",
    "speed_perturb",
    "volume_perturb",
    "draw_volume_factors",
    "to_int16",
]

SPEED_FACTORS: tuple[float, float, float] = (0.9, 1.0, 1.1)
VOLUME_SCALE_LOW = 0.125
VOLUME_SCALE_HIGH = 2.0
INT16_MIN, INT16_MAX = -32768.0, 32767.0

ArrayLike = Union[np.ndarray, "torch.Tensor", Sequence[float]]


def _as_float_array(wave: ArrayLike, name: str) -> np.ndarray:
    arr = np.asarray(wave.detach().cpu() if hasattr(wave, "detach") else wave)  # a torch.Tensor or an array
    if arr.dtype not in (np.float32, np.float64):
        arr = arr.astype(np.float64)
    if arr.ndim != 1:
        raise ValueError(f"{name}: waveform must be 1-D (one channel), got shape {arr.shape}")
    return arr


def speed_perturb(
    wave: ArrayLike, factor: float, sample_frequency: float = 16000.0, name: str = "waveform"
) -> np.ndarray:
    """sox ``speed <factor>``: play ``wave`` ``factor`` times faster (pitch up by ``factor``).

    Args:
        wave: 1-D samples (int16 scale, any real dtype).
        factor: speed factor, e.g. 0.9 or 1.1; 1.0 returns an unchanged copy (Kaldi does not run sox then).
        sample_frequency: rate of ``wave``; the output has the same rate.
        name: recording id for error messages.

    Returns:
        float32/float64 array (float64 for integer input) of ``round(len(wave) / factor)`` samples.
    """
    if not factor > 0.0:
        raise ValueError(f"{name}: speed factor must be positive, got {factor}")
    arr = _as_float_array(wave, name)
    if factor == 1.0 or arr.shape[0] == 0:
        return arr.copy()
    return soxr.resample(arr, sample_frequency * factor, sample_frequency, quality="HQ")


def volume_perturb(wave: ArrayLike, factor: float, clip: bool = True, name: str = "waveform") -> np.ndarray:
    """sox ``--vol <factor>``: multiply the samples by ``factor`` (clipped to the int16 range if ``clip``)."""
    arr = _as_float_array(wave, name)
    out = arr * arr.dtype.type(factor)
    if clip:
        np.clip(out, INT16_MIN, INT16_MAX, out=out)
    return out


def draw_volume_factors(
    recording_ids: Sequence[str], scale_low: float = VOLUME_SCALE_LOW, scale_high: float = VOLUME_SCALE_HIGH
) -> dict[str, float]:
    """Volume factors exactly as ``perturb_volume.py`` draws them.

    ``recording_ids`` must be in wav.scp order (sorted, LC_ALL=C); one ``random.uniform(low, high)`` is
    drawn per recording after ``random.seed(0)``. A private ``random.Random`` is used, so the global
    ``random`` state is untouched. Duplicate ids raise ValueError (wav.scp keys are unique).
    """
    rng = random.Random(0)
    factors: dict[str, float] = {}
    for reco in recording_ids:
        if reco in factors:
            raise ValueError(f"duplicate recording id {reco} in volume perturbation list")
        factors[reco] = rng.uniform(scale_low, scale_high)
    return factors


def to_int16(wave: ArrayLike) -> np.ndarray:
    """Round to the nearest integer and clip to [-32768, 32767], as a 16-bit writer does (no dither)."""
    arr = _as_float_array(wave, "waveform")
    return np.clip(np.rint(arr), INT16_MIN, INT16_MAX).astype(np.int16)


def _per_channel(f, x: np.ndarray) -> np.ndarray:
    return np.stack([f(x[:, c]) for c in range(x.shape[1])], axis=1).astype(np.float32)


def sox_effects(x: np.ndarray, fs: int, args: list[str], who: str) -> np.ndarray:
    """The effects of a perturbed wav.scp entry's sox command on samples [N, C] (int16 scale) at ``fs``:
    ``--vol v`` (:func:`volume_perturb`, clipped to 16 bits as sox does) and ``speed f``
    (:func:`speed_perturb`); the readers of ser.io.audio take it as their ``effects``."""
    from ser.io.audio import AudioError

    i = 0
    while i < len(args):
        a = args[i]
        if a == "--vol" and i + 1 < len(args):
            v = float(args[i + 1])
            x = _per_channel(lambda c: volume_perturb(c, v, name=who), x)
            i += 2
        elif a == "speed" and i + 1 < len(args):
            f = float(args[i + 1])
            x = _per_channel(lambda c: speed_perturb(c, f, sample_frequency=fs, name=who), x)
            i += 2
        else:
            raise AudioError(f"{who}: unsupported sox option {a!r}")
    return x
