"""Audio for data dirs: ``wav.scp`` rxfilenames and ``segments`` cutting.

Kaldi reads ``wav.scp`` values as extended filenames: a path, or a shell pipeline
ending in ``|`` (src/util/kaldi-io.h).  We cannot assume sph2pipe or sox are
installed, so the pipelines Kaldi recipes write are interpreted here:

    <path>                                           plain file (wav/flac/sph via libsndfile)
    sph2pipe -f wav -p [-c N] <path> |               NIST SPHERE (TED-LIUM's wav.scp)
    sox [-t wav] <path> -t wav - speed <f> |         utils/perturb_data_dir_speed.sh
    <entry> sox -t wav - -t wav - speed <f> |        ... applied to a piped entry
    <entry> sox --vol <v> -t wav - -t wav - |        utils/data/perturb_data_dir_volume.sh

Any other pipeline is run with ``bash -c`` if its first program exists, and its
stdout read as a wav file.  The recipe's steps read pipelines; ``ser-infer``, the end user's entry point,
refuses them unless given ``--allow-pipes true`` (``allow_pipes=False``: a wav.scp line is data, not a
command to run).  Samples are returned as float32 in int16 units
(Kaldi does not scale waves to [-1, 1], src/feat/wave-reader.cc).

Deviations, all logged: a file at another sample rate is resampled (Kaldi would
refuse unless --allow-downsample/upsample); multi-channel audio uses channel 0
(as compute-mfcc-feats with --channel=-1 does, with a warning); a file whose format is not its
extension's (MP3 bytes in a ``.wav``) is decoded as what it is, with a warning.
Segment cutting follows src/featbin/extract-segments.cc: sample indices
int(t*fs + 0.5), segments ending past the file by more than ``max_overshoot``
(0.5 s) or shorter than ``min_segment_length`` (0.1 s) are skipped with a warning,
smaller overshoots are truncated.  An utterance whose samples include NaN or Inf (possible in
float wavs only) is skipped and counted, as compute-mfcc-feats skips an utterance it cannot process.
"""

from __future__ import annotations

import io
import logging
import os
import shlex
import shutil
import subprocess
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import soundfile as sf

log = logging.getLogger(__name__)


class AudioError(RuntimeError):
    pass


@dataclass
class AudioStats:
    """Counts of the logged, non-fatal events while reading (written to the job log)."""

    counts: Counter = field(default_factory=Counter)

    def add(self, what: str, n: int = 1) -> None:
        self.counts[what] += n

    def summary(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in sorted(self.counts.items())) or "no warnings"


# sample rates outside this range are a broken header, not audio (a WAV claiming 1 Hz would be resampled into
# hours of 16 kHz samples)
MIN_SAMPLE_RATE, MAX_SAMPLE_RATE = 4000, 768000


def check_sample_rate(fs: int, who: str, path: str) -> None:
    if not MIN_SAMPLE_RATE <= fs <= MAX_SAMPLE_RATE:
        raise AudioError(f"{who}: audio file {path} claims a sample rate of {fs} Hz (outside "
                         f"{MIN_SAMPLE_RATE}..{MAX_SAMPLE_RATE}; a broken header?)")


def declared_frames(path: str, channels: int) -> int | None:
    """Sample frames promised by the header (RIFF data chunk / SPHERE sample_count), if we can tell."""
    with open(path, "rb") as f:
        head = f.read(4096)
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        i = 12
        block = None
        while i + 8 <= len(head):
            cid, size = head[i:i + 4], int.from_bytes(head[i + 4:i + 8], "little")
            if cid == b"fmt ":
                block = int.from_bytes(head[i + 20:i + 22], "little")  # bytes per sample frame
            if cid == b"data":
                return size // block if block and size != 0xFFFFFFFF else None
            i += 8 + size + (size & 1)
    if head[:8] == b"NIST_1A\n":
        for line in head.split(b"\n"):
            f = line.split()
            if len(f) == 3 and f[0] == b"sample_count":
                return int(f[2])
    return None


# libsndfile's major format names for the extensions corpora use
_EXT_FORMATS = {".wav": ("WAV", "WAVEX", "RF64"), ".sph": ("NIST",), ".flac": ("FLAC",), ".mp3": ("MP3",),
                ".ogg": ("OGG",)}


def _read_file(path: str, who: str, stats: AudioStats | None = None) -> tuple[np.ndarray, int]:
    if not os.path.exists(path):
        raise AudioError(f"{who}: audio file not found: {path}")
    if not os.path.isfile(path) or not os.access(path, os.R_OK):
        raise AudioError(f"{who}: audio file {path} is not a readable regular file (permissions, FIFO, directory?)")
    try:
        info = sf.info(path)
        data, fs = sf.read(path, dtype="float32", always_2d=True)
    except Exception as e:  # libsndfile errors are RuntimeError/LibsndfileError
        raise AudioError(f"{who}: cannot read audio {path}: {str(e).splitlines()[0]}") from e
    expected = _EXT_FORMATS.get(os.path.splitext(path)[1].lower())
    if expected and info.format not in expected:  # e.g. MP3 bytes in a .wav: decoded, but say so
        log.warning("%s: %s holds %s audio (%s), not what its extension says; decoded as %s",
                    who, path, info.format, info.subtype, info.format)
        if stats:
            stats.add("format_not_the_extensions")
    check_sample_rate(int(fs), who, path)
    declared = declared_frames(path, info.channels)
    if data.shape[0] < max(info.frames, declared or 0):
        raise AudioError(f"{who}: audio file {path} is truncated ({data.shape[0]} of {max(info.frames, declared)} samples)")
    return data * 32768.0, fs


def _read_bytes(buf: bytes, who: str) -> tuple[np.ndarray, int]:
    try:
        data, fs = sf.read(io.BytesIO(buf), dtype="float32", always_2d=True)
    except Exception as e:
        raise AudioError(f"{who}: cannot decode piped audio: {str(e).splitlines()[0]}") from e
    return data * 32768.0, fs


Effects = Callable[[np.ndarray, int, list[str], str], np.ndarray]
"""Applies sox effect arguments (``--vol v``, ``speed f``) to samples [N, C] at a rate:
ser.features.perturb.sox_effects; the readers take it from their callers, so that io keeps to data."""


def _apply(effects: Effects | None, x: np.ndarray, fs: int, args: list[str], who: str, rx: str) -> np.ndarray:
    if not args:
        return x
    if effects is None:
        raise AudioError(f"{who}: {rx!r} applies sox effects ({' '.join(args)}); this reader was given no "
                         "effects function (ser.features.perturb.sox_effects)")
    return effects(x, fs, args, who)


def _parse_sox(cmd: list[str], who: str) -> tuple[str | None, list[str]]:
    """sox [--vol v] [-t wav] IN -t wav - [effects] → (IN or None for stdin, effects incl. --vol)."""
    effects: list[str] = []
    rest = cmd[1:]
    pre: list[str] = []
    while rest and rest[0].startswith("--"):
        pre += rest[:2]
        rest = rest[2:]
    files: list[str] = []
    i = 0
    while i < len(rest):
        if rest[i] == "-t":
            i += 2
            continue
        files.append(rest[i])
        i += 1
        if len(files) == 2:
            break
    if len(files) != 2 or files[1] != "-":
        raise AudioError(f"{who}: unsupported sox command {' '.join(cmd)!r}")
    effects = pre + rest[i:]
    return (None if files[0] == "-" else files[0]), effects


def read_rxfile(rx: str, who: str = "", stats: AudioStats | None = None, allow_pipes: bool = True,
                effects: Effects | None = None) -> tuple[np.ndarray, int]:
    """Read a ``wav.scp`` value.  Returns (samples [N, C] float32 in int16 units, sample rate).
    ``allow_pipes=False``: a pipeline is an error (nothing is run).  ``effects``: applies the sox
    effects of a perturbed entry (ser.features.perturb.sox_effects; without it such an entry is an error)."""
    who = who or rx
    rx = rx.strip()
    if not rx.endswith("|"):
        return _read_file(rx, who, stats)
    if not allow_pipes:
        raise AudioError(f"{who}: wav.scp entry {rx!r} is a pipeline; it is run only with --allow-pipes true")
    stages = [shlex.split(s) for s in rx[:-1].split("|")]
    if any(not s for s in stages):
        raise AudioError(f"{who}: empty command in pipeline {rx!r}")
    try:
        x, fs = _run_known(stages, who, stats, lambda x, fs, args: _apply(effects, x, fs, args, who, rx))
    except _Unknown:
        return _run_shell(rx, stages[0][0], who)
    return x, fs


class _Unknown(Exception):
    pass


def _run_known(stages: list[list[str]], who: str, stats: AudioStats | None, apply) -> tuple[np.ndarray, int]:
    first = stages[0]
    if first[0] == "sph2pipe":
        args = [a for a in first[1:]]
        paths = [a for j, a in enumerate(args) if not a.startswith("-") and (j == 0 or args[j - 1] not in ("-f", "-c", "-t"))]
        if len(paths) != 1:
            raise AudioError(f"{who}: cannot find the file in {' '.join(first)!r}")
        x, fs = _read_file(paths[0], who, stats)
        if "-c" in args:
            c = int(args[args.index("-c") + 1]) - 1
            x = x[:, c : c + 1]
    elif first[0] == "sox":
        src, effects = _parse_sox(first, who)
        if src is None:
            raise AudioError(f"{who}: sox reads stdin at the start of a pipeline")
        x, fs = _read_file(src, who, stats)
        x = apply(x, fs, effects)
    elif first[0] == "cat" and len(first) == 2:
        x, fs = _read_file(first[1], who, stats)
    else:
        raise _Unknown
    for st in stages[1:]:
        if st[0] != "sox":
            raise _Unknown
        src, effects = _parse_sox(st, who)
        if src is not None:
            raise _Unknown
        x = apply(x, fs, effects)
    return x, fs


def _run_shell(rx: str, prog: str, who: str) -> tuple[np.ndarray, int]:
    if shutil.which(prog) is None:
        raise AudioError(f"{who}: pipeline needs {prog!r}, which is not installed: {rx!r}")
    p = subprocess.run(["bash", "-c", rx[:-1]], capture_output=True)
    if p.returncode != 0:
        err = p.stderr.decode(errors="replace").strip().splitlines()
        raise AudioError(f"{who}: command failed ({p.returncode}): {rx!r}: {err[-1] if err else ''}")
    return _read_bytes(p.stdout, who)


def to_mono_rate(x: np.ndarray, fs: int, target_fs: int, who: str, stats: AudioStats | None = None) -> np.ndarray:
    """Channel 0 and ``target_fs`` (both logged when they change anything)."""
    if x.shape[1] > 1:
        log.warning("%s: %d channels, using channel 0 (as Kaldi with --channel=-1)", who, x.shape[1])
        if stats:
            stats.add("multichannel_used_channel0")
    y = np.ascontiguousarray(x[:, 0])
    if fs != target_fs:
        import soxr

        log.warning("%s: sample rate %d Hz, resampled to %d Hz", who, fs, target_fs)
        if stats:
            stats.add("resampled")
        y = soxr.resample(y, fs, target_fs, quality="HQ").astype(np.float32)
    return y


class RecordingCache:
    """Reads each recording once while its segments are cut (segments are sorted by utterance,
    and Kaldi-style utterance ids start with the recording id, so one-entry caching suffices)."""

    def __init__(self, wav: dict[str, str], fs: int, stats: AudioStats | None = None, allow_pipes: bool = True,
                 effects: Effects | None = None):
        self.wav, self.fs, self.stats, self.allow_pipes, self.effects = wav, fs, stats, allow_pipes, effects
        self._key: str | None = None
        self._val: np.ndarray | None = None

    def get(self, reco: str) -> np.ndarray:
        if reco != self._key:
            if reco not in self.wav:
                raise AudioError(f"recording {reco!r} not in wav.scp")
            x, fs = read_rxfile(self.wav[reco], who=f"recording {reco}", stats=self.stats,
                                allow_pipes=self.allow_pipes, effects=self.effects)
            self._val = to_mono_rate(x, fs, self.fs, f"recording {reco}", self.stats)
            self._key = reco
        return self._val


def cut_segment(
    x: np.ndarray, fs: int, start: float, end: float, who: str,
    stats: AudioStats | None = None, max_overshoot: float = 0.5, min_segment_length: float = 0.1,
) -> np.ndarray | None:
    """extract-segments semantics; returns None for a skipped segment (logged and counted)."""
    s, e = int(start * fs + 0.5), int(end * fs + 0.5)
    n = x.shape[0]
    if e > n:
        if (e - n) / fs > max_overshoot:
            log.warning("%s: segment %.2f-%.2f ends %.2f s past the end of the recording (%.2f s); skipped",
                        who, start, end, (e - n) / fs, n / fs)
            if stats:
                stats.add("segment_past_end_skipped")
            return None
        e = n
    if (e - s) / fs < min_segment_length:
        log.warning("%s: segment %.2f-%.2f shorter than %.2f s; skipped", who, start, end, min_segment_length)
        if stats:
            stats.add("segment_too_short_skipped")
        return None
    return x[s:e]


def iter_utterance_audio(data, fs: int = 16000, stats: AudioStats | None = None, utts=None,
                         effects: Effects | None = None):
    """Yield (utt, samples float32 int16-scale) for a DataDir; skipped segments are not yielded.
    ``effects``: as :func:`read_rxfile`'s."""
    stats = stats if stats is not None else AudioStats()
    cache = RecordingCache(data.wav, fs, stats, effects=effects)
    for u in utts if utts is not None else data.utts:
        if data.segments is not None:
            seg = data.segments[u]
            y = cut_segment(cache.get(seg.reco), fs, seg.start, seg.end, f"utterance {u}", stats)
            if y is None:
                continue
        else:
            y = cache.get(u)
        if y.size == 0:
            log.warning("utterance %s: empty audio; skipped", u)
            stats.add("empty_audio_skipped")
            continue
        bad = int(y.size - np.count_nonzero(np.isfinite(y)))
        if bad:  # float wavs can hold NaN/Inf; their frames would spread through every later sum
            log.warning("utterance %s: %d non-finite (NaN/Inf) audio samples; skipped", u, bad)
            stats.add("non_finite_audio_skipped")
            continue
        yield u, y
