"""Recordings to classify: what the inputs name, and their audio as 16 kHz mono blocks.

Inputs (``ser-infer`` and :class:`ser.infer.recognizer.EmotionRecognizer`):

* an audio file in any format libsndfile reads (wav, flac, ogg/vorbis, opus, mp3 with
  libsndfile >= 1.1, ...) at any sample rate and channel count; its id is the path as given;
* a directory: every audio file below it (recursive, sorted), or, when it holds ``wav.scp``,
  a Kaldi data dir (its utterances, cut by ``segments`` if present; ids = utterance ids);
* a Kaldi ``wav.scp`` file (``<id> <rxfilename>``; pipelines as ser.io.audio reads them, and only
  with ``allow_pipes``: a pipeline runs a command).

Files are streamed: :func:`file_blocks` reads ``block_seconds`` at a time, averages the
channels to mono and resamples with a streaming soxr resampler, so memory does not grow with
the length of the recording.  Data-dir utterances are read by ser.io.audio exactly as stage 3
reads them for feature extraction (channel 0, Kaldi's ``--channel=-1``), so the features match
the recipe's.  Samples are float32 in int16 units (Kaldi's wave-reader scale).  Each
conversion (rate, channels) is logged once per process, not once per file.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import soundfile as sf

from ser.features.perturb import sox_effects
from ser.io.audio import AudioError, AudioStats, RecordingCache, check_sample_rate, cut_segment, declared_frames
from ser.io.datadir import DataDir, read_kv

log = logging.getLogger(__name__)

SAMPLE_RATE = 16000
AUDIO_EXTENSIONS = frozenset({".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".sph", ".aif",
                              ".aiff", ".au", ".w64", ".caf"})
_said: set[tuple[int, int]] = set()


@dataclass
class Recording:
    """One thing to classify: ``id`` for the output, ``blocks()`` its 16 kHz mono samples."""

    id: str
    blocks: Callable[[], Iterator[np.ndarray]]
    where: str  # the file (or data dir entry) named in error messages
    file: str | None = None  # the audio file it reads, when one (outputs must not replace it)


def _say_conversion(path: str, rate: int, channels: int) -> None:
    if (rate, channels) != (SAMPLE_RATE, 1) and (rate, channels) not in _said:
        _said.add((rate, channels))
        log.info("%s: %d Hz, %d channel(s): converted to %d Hz mono (channels averaged; said once "
                 "for every input of this kind)", path, rate, channels, SAMPLE_RATE)


def file_blocks(path: str | os.PathLike, block_seconds: float = 30.0) -> Iterator[np.ndarray]:
    """16 kHz mono float32 (int16 units) blocks of an audio file, streamed.  A file holding fewer
    samples than its header promises (truncated; the same check as a wav.scp entry's, ser.io.audio)
    or claiming an implausible sample rate is an error naming it."""
    path = str(path)
    if not os.path.exists(path):
        raise AudioError(f"{path}: no such file")
    if not os.path.isfile(path):
        raise AudioError(f"{path}: not a regular file (a FIFO, device or directory)")
    if not os.access(path, os.R_OK):
        raise AudioError(f"{path}: permission denied (not readable)")
    try:
        f = sf.SoundFile(path)
    except Exception as e:  # noqa: BLE001 -- libsndfile's errors (unknown format, no such file)
        raise AudioError(f"{path}: cannot read audio: {str(e).splitlines()[0]}") from e
    with f:
        rate, channels = int(f.samplerate), int(f.channels)
        check_sample_rate(rate, path, path)
        promised = max(int(f.frames), declared_frames(path, channels) or 0)
        got = 0
        _say_conversion(path, rate, channels)
        stream = None
        if rate != SAMPLE_RATE:
            import soxr

            stream = soxr.ResampleStream(rate, SAMPLE_RATE, 1, dtype="float32", quality="HQ")
        n = max(1, int(block_seconds * rate))
        while True:
            try:
                x = f.read(n, dtype="float32", always_2d=True)
            except Exception as e:  # noqa: BLE001 -- a truncated or corrupt stream
                raise AudioError(f"{path}: cannot decode audio: {str(e).splitlines()[0]}") from e
            last = x.shape[0] < n
            got += x.shape[0]
            if last and got < promised:
                raise AudioError(f"{path}: audio file is truncated ({got} of {promised} samples)")
            y = (x.mean(axis=1) if channels > 1 else x[:, 0]) * np.float32(32768.0)
            if stream is not None:
                y = stream.resample_chunk(np.ascontiguousarray(y, dtype=np.float32), last=last)
            if y.size:
                yield y.astype(np.float32, copy=False)
            if last:
                return


# in-memory sample types and how they map onto int16 units (soundfile's and scipy's conventions:
# int32 full scale 2^31, uint8 centred on 128, floats in [-1, 1])
_INT_SCALES = {np.dtype(np.int16): (0.0, 1.0), np.dtype(np.int32): (0.0, 1.0 / 65536),
               np.dtype(np.int8): (0.0, 256.0), np.dtype(np.uint8): (128.0, 256.0)}


def _int16_units(x: np.ndarray, name: str) -> np.ndarray:
    """float32 samples in int16 units of int16 / int32 / int8 / uint8 / float samples; any other type
    (bool, int64, complex, objects) is an error."""
    if x.dtype in _INT_SCALES:
        offset, scale = _INT_SCALES[x.dtype]
        return ((x.astype(np.float64) - offset) * scale).astype(np.float32)
    if x.dtype.kind == "f":
        return x.astype(np.float32) * np.float32(32768.0)
    raise AudioError(f"{name}: samples of type {x.dtype}; expected float (in [-1, 1]), int16, int32, int8 or uint8")


def signal_blocks(signal: np.ndarray, sample_rate: int, name: str) -> Iterator[np.ndarray]:
    """An in-memory signal ([samples] or [samples, channels]; float in [-1, 1], int16, int32, int8 or
    uint8) as one 16 kHz mono block in int16 units."""
    x = np.asarray(signal)
    if x.ndim not in (1, 2):
        raise AudioError(f"{name}: expected a 1-D or 2-D (samples, channels) signal, got shape {x.shape}")
    if x.ndim == 2 and x.shape[0] < x.shape[1] and x.shape[0] <= 8:
        raise AudioError(f"{name}: shape {x.shape} looks like (channels, samples); give (samples, channels)")
    if not 1 <= int(sample_rate) <= 768000:
        raise AudioError(f"{name}: sample rate {sample_rate} Hz")
    x = _int16_units(x, name)
    if x.ndim == 2:
        _say_conversion(name, int(sample_rate), x.shape[1])
        x = x.mean(axis=1)
    elif int(sample_rate) != SAMPLE_RATE:
        _say_conversion(name, int(sample_rate), 1)
    if int(sample_rate) != SAMPLE_RATE:
        import soxr

        x = soxr.resample(x, int(sample_rate), SAMPLE_RATE, quality="HQ").astype(np.float32)
    yield np.ascontiguousarray(x)


def _data_dir_recordings(d: DataDir, allow_pipes: bool = False) -> Iterator[Recording]:
    """The utterances of a data dir, read as stage 3 reads them (ser.io.audio: channel 0,
    ``segments`` cut as extract-segments does); each recording is read once for its segments.
    A ``wav.scp`` pipeline is an error unless ``allow_pipes``."""
    stats = AudioStats()
    cache = RecordingCache(d.wav, SAMPLE_RATE, stats, allow_pipes, effects=sox_effects)
    for u in d.utts:
        def read(u: str = u) -> Iterator[np.ndarray]:
            if d.segments is None:
                yield cache.get(u)
                return
            seg = d.segments[u]
            y = cut_segment(cache.get(seg.reco), SAMPLE_RATE, seg.start, seg.end, f"utterance {u}", stats)
            if y is None:
                raise AudioError(f"{d.path}: utterance {u}: segment skipped (see the warning above)")
            yield y
        rx = d.wav.get(d.segments[u].reco if d.segments is not None else u, "").strip()
        yield Recording(u, read, f"{d.path}: utterance {u}", None if rx.endswith("|") or not rx else rx)


def _wav_scp_dir(scp: Path) -> DataDir:
    wav = read_kv(scp)
    return DataDir(utt2spk={u: u for u in wav}, wav=wav, path=scp)


def _audio_files(p: Path) -> list[Path]:
    """The audio files below ``p`` (sorted); a sub-directory that cannot be listed is skipped with a warning
    naming it (the others are still read)."""
    unreadable: list[OSError] = []
    files = [Path(root) / n for root, _, names in os.walk(p, onerror=unreadable.append) for n in names
             if Path(n).suffix.lower() in AUDIO_EXTENSIONS]
    for e in unreadable:
        log.warning("%s: cannot list directory (%s); skipped", e.filename, e.strerror)
    return sorted(f for f in files if f.is_file())


def list_recordings(inputs: list[str], block_seconds: float = 30.0, allow_pipes: bool = False
                    ) -> Iterator[Recording]:
    """The recordings the inputs name, in order (see the module docstring).  A missing input is
    an error; a directory without audio files is an error naming it; a ``wav.scp`` pipeline is an
    error naming its entry unless ``allow_pipes`` (it would run a command)."""
    for inp in inputs:
        p = Path(inp)
        if p.is_dir() and (p / "wav.scp").is_file():
            d = DataDir.load(p, validate=False) if (p / "utt2spk").is_file() else _wav_scp_dir(p / "wav.scp")
            yield from _data_dir_recordings(d, allow_pipes)
        elif p.is_dir():
            files = _audio_files(p)
            if not files:
                raise AudioError(f"{p}: no audio files ({', '.join(sorted(AUDIO_EXTENSIONS))}) below it")
            for f in files:
                yield Recording(str(f), lambda f=f: file_blocks(f, block_seconds), str(f), str(f))
        elif p.is_file() and p.name.endswith(".scp"):
            yield from _data_dir_recordings(_wav_scp_dir(p), allow_pipes)
        elif p.is_file():
            yield Recording(inp, lambda p=p: file_blocks(p, block_seconds), inp, inp)
        elif p.exists():
            raise AudioError(f"{inp}: not a regular file or directory (a FIFO or device?)")
        else:
            raise AudioError(f"{inp}: no such file or directory")
