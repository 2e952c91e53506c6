"""Emotion recognition of recordings with an exported model (issue 14, items 2-6).

    from ser import EmotionRecognizer
    rec = EmotionRecognizer.from_dir("exp/ser/tdnn_l12_uttivec/export")
    print(rec.classify_file("my.wav"))                  # label, posteriors, duration
    tl = rec.timeline("dialog.wav"); tl.write_png("dialog.png"); tl.write_csv("dialog.csv")

The pipeline is stage 3 + 4 + 7 on one recording: 16 kHz mono samples -> MFCC (the export's
``mfcc.conf``, dither seeded from the recording id as ser.bin.compute_mfcc_feats seeds it
from the utterance id) -> online i-vectors of the recording on its own (per-utterance mode,
as ``exp/nnet3/ivectors_<set>_utt``) -> the grafted network on the whole padded recording ->
frame softmaxes -> their mean over the frames of speech, argmax (ser.emotion.voting).

Speech detection (``vad=True``, the default): Silero VAD (:mod:`ser.infer.vad`) runs over the same
samples; an output frame counts when the centre of its first MFCC window lies in a speech segment.  The
recording's posteriors are the mean over those frames (all frames when every one is speech: then the
posteriors are stage 7's); a recording without a speech frame is labelled ``no_speech`` (posteriors
``None``), and timeline windows mostly without speech are left unlabelled.  Stage 7 decodes segmented
turns without a VAD; ``vad=False`` reproduces it on any recording.

Streaming (bounded memory).  MFCC frames are computed in blocks of ``block_frames`` (6144 =
61.44 s; a multiple of the MFCC extractor's 1024-frame dither block on CPU and of the frame
subsampling factor 3, so the features and the output frame grid are those of the whole
recording).  Each block goes through the network with the model's full context taken from
its neighbours (one block of lookahead), so frame outputs equal one pass over the whole
recording.  Deviation: the online i-vector restarts at every block (the block with its context
is one utterance of the i-vector extractor); recordings up to one block long are exactly the
per-utterance computation of the recipe (tested against stage 7's decoding).

Speed.  The network runs as :class:`ser.infer.frame_net.FrameNet` (time-major GEMMs, the
model's frame plan: one pass per block, the layers after tdnnf3 at a third of the frame rate),
equal to the model's forward up to float32 rounding.  With more than one torch thread on CPU,
reading, MFCC and i-vectors of block k+1 run on a worker thread (one torch thread) while the
network runs block k on the other threads; the first block's features, and the network whenever
the worker has nothing left to do (the last block; a recording of one block), use all of them.
``bench/infer.py`` measures the whole path against MFCC extraction alone.

Bad input raises :class:`ser.io.audio.AudioError` with one line naming the recording: no
samples, NaN/infinite samples, all samples zero, shorter than the model context (the message
gives the minimum duration).
"""

from __future__ import annotations

import logging
import math
import zlib
from dataclasses import dataclass
from pathlib import Path
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Iterable, Iterator, TypeVar

import numpy as np
import torch

from ser.device import resolve_device
from ser.emotion.graft import GraftedModel
from ser.emotion.voting import decide
from ser.features.mfcc import MfccOptions, compute_mfcc, num_frames
from ser.infer.audio import SAMPLE_RATE, file_blocks, signal_blocks
from ser.emotion.graft import load_grafted
from ser.infer.export import SYNTHETIC_CORPUS, read_export
from ser.infer.frame_net import FrameNet
from ser.infer.timeline import NO_SPEECH, LevelMeter, Timeline
from ser.infer.vad import SpeechDetector, VadOptions, VadStream, speech_mask
from ser.io.audio import AudioError
from ser.io.batching import FeatureSet, MatrixTable, model_inputs
from ser.ivector.diag_ubm import DiagGmm, UbmFeatures
from ser.ivector.extractor import IvectorExtractor
from ser.ivector.features import UttBatch
from ser.ivector.online import OnlineIvectorExtractor, OnlineIvectorOptions

log = logging.getLogger(__name__)

BLOCK_FRAMES = 6144
T = TypeVar("T")


@dataclass
class Classification:
    """The decision for one recording: ``posteriors`` in ``labels`` order (mean frame softmax over the
    frames of speech); ``label`` ``no_speech`` and ``posteriors`` None when speech detection found none.
    ``speech``: seconds of speech found (None without speech detection)."""

    id: str
    label: str
    labels: list[str]
    posteriors: list[float] | None
    duration: float  # seconds of 16 kHz audio
    speech: float | None = None

    @classmethod
    def of(cls, rec_id: str, labels: list[str], posterior: torch.Tensor | None, duration: float,
           speech: float | None = None) -> "Classification":
        """From the mean frame softmax [K] (float64): the argmax, ties to the first label; None: no speech."""
        if posterior is None:
            return cls(rec_id, NO_SPEECH, list(labels), None, duration, speech)
        return cls(rec_id, labels[decide(posterior)], list(labels), posterior.tolist(), duration, speech)

    def __str__(self) -> str:
        post = "no speech found" if self.posteriors is None else \
            " ".join(f"{k} {p:.3f}" for k, p in zip(self.labels, self.posteriors))
        sp = "" if self.speech is None else f", {self.speech:.2f} s speech"
        return f"{self.id}: {self.label} ({post}; {self.duration:.2f} s{sp})"

    def as_dict(self) -> dict:
        post = None if self.posteriors is None else dict(zip(self.labels, self.posteriors))
        return {"id": self.id, "label": self.label, "posteriors": post, "duration": self.duration,
                "speech": self.speech}


@dataclass
class FramePosteriors:
    """Frame softmaxes [n, K] (float32) of a recording, one every ``frame_period`` seconds; ``speech``
    [n] bool marks the frames of speech (None without speech detection: all count), ``speech_seconds``
    the length of the speech segments."""

    id: str
    posteriors: torch.Tensor
    frame_period: float
    duration: float
    speech: np.ndarray | None = None
    speech_seconds: float | None = None

    def mean(self) -> torch.Tensor | None:
        """Mean softmax [K] (float64) over the frames of speech; None when there is none."""
        p = self.posteriors.double() if self.speech is None else self.posteriors.double()[torch.from_numpy(self.speech)]
        return p.mean(0) if p.shape[0] else None


# float audio beyond twice full scale is not audio scaled to [-1, 1] (its MFCC would sit far outside
# training's); a signal whose deviation around its mean is under one 16-bit step is silence or DC only
MAX_PEAK = 2 * 32768.0
MIN_STD = 1.0


class _SampleCheck:
    """Passes sample blocks through, failing on non-finite samples or samples far beyond full scale;
    counts samples, peak, and sums for the deviation check (:meth:`check_signal`)."""

    def __init__(self, where: str) -> None:
        self.where, self.count, self.peak = where, 0, 0.0
        self.s1 = self.s2 = 0.0
        self.first: float | None = None

    def __call__(self, blocks: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
        for x in blocks:
            if x.size and not bool(np.isfinite(x).all()):
                raise AudioError(f"{self.where}: audio has NaN or infinite samples")
            if x.size:
                peak = float(np.abs(x).max())
                if peak > MAX_PEAK:
                    raise AudioError(f"{self.where}: samples reach {peak / 32768:.3g} times full scale (float audio "
                                     f"must lie in [-1, 1]; rescale it)")
                self.peak = max(self.peak, peak)
                if self.first is None:
                    self.first = float(x[0])
                d = x.astype(np.float64) - self.first  # shifted sums: no cancellation for a large DC
                self.s1, self.s2 = self.s1 + float(d.sum()), self.s2 + float((d * d).sum())
            self.count += x.size
            yield x

    def check_signal(self) -> None:
        """After the stream: no samples, all zero, or silence / DC only (deviation < one 16-bit step)."""
        if self.count == 0:
            raise AudioError(f"{self.where}: no audio samples")
        if self.peak == 0.0:
            raise AudioError(f"{self.where}: all samples are zero")
        var = max(self.s2 / self.count - (self.s1 / self.count) ** 2, 0.0)
        if var ** 0.5 < MIN_STD:
            raise AudioError(f"{self.where}: no signal (samples deviate {var ** 0.5:.3g} int16 steps from their mean "
                             f"{self.first + self.s1 / self.count:.3g}: silence or DC only)")


def mfcc_blocks(samples: Iterable[np.ndarray], opts: MfccOptions, generator: torch.Generator,
                block_frames: int = BLOCK_FRAMES) -> Iterator[torch.Tensor]:
    """The MFCC frames of the concatenated samples in blocks of ``block_frames`` (the last one
    shorter): frame t reads samples ``[shift t, shift t + size)`` (``--snip-edges=true``)."""
    if not opts.snip_edges:
        raise ValueError("streamed MFCC needs --snip-edges=true in the model's mfcc.conf")
    size, shift = opts.window_size, opts.window_shift
    need = (block_frames - 1) * shift + size
    buf = np.zeros(0, np.float32)
    for x in samples:
        buf = np.concatenate([buf, x]) if buf.size else x
        while buf.size >= need:
            yield compute_mfcc([torch.from_numpy(buf[:need])], opts, generator=generator)[0]
            buf = buf[block_frames * shift:]
    if num_frames(buf.size, opts) > 0:
        yield compute_mfcc([torch.from_numpy(np.ascontiguousarray(buf))], opts, generator=generator)[0]


def with_context(blocks: Iterable[torch.Tensor], left: int, right: int
                 ) -> Iterator[tuple[torch.Tensor, int, int]]:
    """(block with up to ``left`` frames before and ``right`` after it, offset of its first
    frame, its length), one block of lookahead."""
    it = iter(blocks)
    cur = next(it, None)
    tail: torch.Tensor | None = None
    while cur is not None:
        nxt = next(it, None)
        parts = ([tail] if tail is not None else []) + [cur] + ([nxt[:right]] if nxt is not None else [])
        a = 0 if tail is None else tail.shape[0]
        yield torch.cat(parts), a, cur.shape[0]
        tail = (cur if tail is None else torch.cat([tail, cur]))[-left:] if left else cur[:0]
        cur = nxt


class Prefetched(Iterator[T]):
    """The items of an iterator, the first computed by the caller (with all its torch threads), each
    later one on a worker thread (one torch thread) while the caller works on the one before: at most
    one item ahead.  ``busy()``: the worker is computing an item (the caller should leave it a core)."""

    _END = object()

    def __init__(self, items: Iterator[T]) -> None:
        self._ahead: Future | None = None
        self._gen = self._run(items)

    def _run(self, items: Iterator[T]) -> Iterator[T]:
        item = next(items, self._END)
        with ThreadPoolExecutor(1, initializer=torch.set_num_threads, initargs=(1,)) as pool:
            while item is not self._END:
                self._ahead = pool.submit(next, items, self._END)
                yield item
                item = self._ahead.result()

    def __next__(self) -> T:
        return next(self._gen)

    def busy(self) -> bool:
        return self._ahead is not None and not self._ahead.done()


def _check_finite(model: torch.nn.Module, path: Path) -> None:
    """Every weight and statistic of the network is finite (a NaN would make every posterior NaN)."""
    for k, t in model.state_dict().items():
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise ValueError(f"{path}: {k}: {int((~torch.isfinite(t)).sum())} non-finite values (NaN/Inf)")


def _check_dims(p: Path, mfcc: MfccOptions, feat_dim: int, ubm: UbmFeatures) -> None:
    """mfcc.conf makes the features the network and the i-vector extractor read (else every recording
    would fail, e.g. with zero-count CMVN stats)."""
    cmvn_dim = int(ubm.gstats.shape[-1]) - 1
    for who, dim in (("the network (model.pt)", feat_dim), ("the i-vector extractor's CMVN stats", cmvn_dim)):
        if mfcc.dim != dim:
            raise ValueError(f"{p / 'mfcc.conf'}: --num-ceps={mfcc.num_ceps}: {who} reads {dim}-dim features")


_warned_synthetic = False


def warn_if_synthetic(info: dict, where: str) -> None:
    """One warning per process when model.json says the model was trained on the embedded synthetic corpus."""
    global _warned_synthetic
    if not _warned_synthetic and SYNTHETIC_CORPUS in str(info.get("corpus", "")):
        _warned_synthetic = True
        log.warning("%s: trained on the embedded synthetic corpus (espeak-ng speech, stage 0): a test of the "
                    "pipeline, not an emotion recogniser for real recordings", where)


class EmotionRecognizer:
    """An exported emotion model, ready to classify recordings (see the module docstring).  ``vad``: detect
    speech (True: Silero VAD with ``VadOptions()``; a :class:`ser.infer.vad.SpeechDetector`; False: none)."""

    def __init__(self, model: GraftedModel, labels: list[str], mfcc_opts: MfccOptions,
                 ivectors: OnlineIvectorExtractor, info: dict | None = None,
                 device: str | torch.device = "cpu", block_frames: int = BLOCK_FRAMES,
                 vad: bool | SpeechDetector = True) -> None:
        fsf = model.frame_subsampling_factor
        if block_frames <= 0 or block_frames % fsf:
            raise ValueError(f"block_frames {block_frames} must be a positive multiple of {fsf}")
        if int(mfcc_opts.sample_frequency) != SAMPLE_RATE:
            raise ValueError(f"the model's MFCC options are for {mfcc_opts.sample_frequency:g} Hz, "
                             f"inference reads {SAMPLE_RATE} Hz")
        self.device = resolve_device(device)
        self.model = model.to(self.device).eval()
        try:
            self.net = FrameNet(self.model)
        except ValueError as e:  # e.g. an untrained model without BatchNorm statistics
            log.info("running the network as trained (%s)", e)
            self.net = lambda x, iv: self.model(x[None], None if iv is None else iv[None])[0]
        self.labels, self.mfcc_opts, self.ivectors = list(labels), mfcc_opts, ivectors
        self.info, self.block_frames = dict(info or {}), int(block_frames)
        # how a person reads each label (model.json's shown_labels: paper 1's hap is IEMOCAP's excited)
        shown = self.info.get("shown_labels")
        self.shown_labels = list(shown) if isinstance(shown, list) and len(shown) == len(self.labels) \
            else list(self.labels)
        shift = mfcc_opts.frame_shift / 1000.0
        self.frame_period = shift * fsf
        self.min_frames = model.left_context + model.right_context + 1
        self.min_duration = ((self.min_frames - 1) * mfcc_opts.window_shift + mfcc_opts.window_size) / SAMPLE_RATE
        self.vad = SpeechDetector(VadOptions()) if vad is True else (vad or None)
        warn_if_synthetic(self.info, "model")

    @classmethod
    def from_dir(cls, path: str | Path, device: str | torch.device = "auto",
                 block_frames: int = BLOCK_FRAMES, vad: bool | SpeechDetector = True) -> "EmotionRecognizer":
        """Load an export dir (ser.infer.export); only files inside it are read."""
        p = Path(path)
        info, labels = read_export(p)  # files checked against model.json's sha256 table
        warn_if_synthetic(info, str(p))
        model, stored, d = load_grafted(p / "model.pt")
        if stored != labels:
            raise ValueError(f"{p}: model.pt's labels {stored} differ from labels.txt {labels}")
        _check_finite(model, p / "model.pt")
        period = info["ivector"]["period"]
        if d.get("ivector_period") is not None and int(d["ivector_period"]) != period:
            raise ValueError(f"{p / 'model.json'}: ivector.period {period} differs from the model's training "
                             f"period {int(d['ivector_period'])} (model.pt)")
        dev = resolve_device(device)
        e = p / "ivector_extractor"
        opts = OnlineIvectorOptions(ivector_period=period)
        ubm = UbmFeatures.from_dir(e)
        mfcc = MfccOptions.from_conf(p / "mfcc.conf")
        _check_dims(p, mfcc, model.body.config.feat_dim, ubm)
        ivectors = OnlineIvectorExtractor(IvectorExtractor.load(e / "final.ie.pt"), DiagGmm.load(e / "final.dubm.pt"),
                                          ubm, opts, dev)
        return cls(model, labels, mfcc, ivectors, info, dev, block_frames, vad)

    # -- the pipeline ------------------------------------------------------------------------
    @torch.inference_mode()
    def _block_inputs(self, ext: torch.Tensor, first: int, n: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The network's input (MFCC [T_in, F], i-vector of every frame [T_in, I]) for frames
        ``first .. first + n - 1`` of ``ext``, the block's i-vectors extracted online over ``ext``."""
        ext = ext.to(self.device)
        batch = UttBatch(["rec"], ["rec"], ext, torch.tensor([ext.shape[0]], device=self.device))
        rows = torch.from_numpy(self.ivectors.extract(batch)[0])
        fs = FeatureSet(MatrixTable.from_arrays(["rec"], [ext.cpu()]), MatrixTable.from_arrays(["rec"], [rows]),
                        self.ivectors.opts.ivector_period)
        fsf = self.model.frame_subsampling_factor
        x, iv = model_inputs(fs, ["rec"], self.model, first_frame=first, num_output_frames=math.ceil(n / fsf))
        return x[0].to(self.device), iv[0].to(self.device) if iv is not None else None

    def _inputs(self, blocks: Iterable[np.ndarray], rec_id: str, check: "_SampleCheck", vs: VadStream | None
                ) -> Iterator[tuple[torch.Tensor, torch.Tensor | None, int]]:
        """(x, i-vectors, frames of the block) for each block of a recording; the samples also go
        to the speech detector's stream ``vs``."""
        g = torch.Generator().manual_seed(zlib.crc32(rec_id.encode()))
        samples = check(blocks) if vs is None else self.vad.tap(check(blocks), vs)
        feats = mfcc_blocks(samples, self.mfcc_opts, g, self.block_frames)
        for ext, first, n in with_context(feats, self.model.left_context, self.model.right_context):
            yield *self._block_inputs(ext, first, n), n

    def _stream(self, blocks: Iterable[np.ndarray], rec_id: str, check: "_SampleCheck", vs: VadStream | None = None
                ) -> Iterator[torch.Tensor]:
        """Frame softmax blocks [ceil(n / fsf), K] (float64) of a recording; the input checks run
        when the stream ends.  With more than one torch thread on CPU, the features of block k+1
        (reading, MFCC, i-vectors) are computed on a worker thread while the network runs block k
        (see the module docstring)."""
        where = check.where
        frames = 0
        inputs = self._inputs(blocks, rec_id, check, vs)
        threads = torch.get_num_threads()
        if self.device.type == "cpu" and threads > 1:
            inputs = Prefetched(inputs)
        try:
            for x, iv, n in inputs:
                frames += n
                if isinstance(inputs, Prefetched) and inputs.busy():
                    torch.set_num_threads(threads - 1)  # the worker has one core: no oversubscription
                with torch.inference_mode():
                    p = torch.softmax(self.net(x, iv).double(), dim=-1).cpu()
                torch.set_num_threads(threads)
                yield p
        finally:
            torch.set_num_threads(threads)
        check.check_signal()
        if frames < self.min_frames:
            raise AudioError(f"{where}: too short ({check.count / SAMPLE_RATE:.3f} s); the model needs at "
                             f"least {self.min_duration:.3f} s ({self.min_frames} frames of context)")

    def _speech(self, vs: VadStream | None, num_frames: int) -> tuple[np.ndarray | None, float | None]:
        """(speech mask of the output frames, seconds of speech) once the stream has ended; (None, None)
        without speech detection."""
        if vs is None:
            return None, None
        segments = self.vad.segments(vs)
        hop = self.mfcc_opts.window_shift * self.model.frame_subsampling_factor
        mask = speech_mask(segments, num_frames, hop, self.mfcc_opts.window_size / 2)
        return mask, sum(b - a for a, b in segments) / SAMPLE_RATE

    def classify_blocks(self, blocks: Iterable[np.ndarray], rec_id: str, where: str | None = None
                        ) -> Classification:
        """Classify a recording given as 16 kHz mono sample blocks (int16 units)."""
        check = _SampleCheck(where or rec_id)
        vs = self.vad.stream() if self.vad else None
        parts = list(self._stream(blocks, rec_id, check, vs))
        mask, speech = self._speech(vs, sum(p.shape[0] for p in parts))
        total, count, a = torch.zeros(len(self.labels), dtype=torch.float64), 0, 0
        for p in parts:  # block by block, as without speech detection (all speech: the same sums)
            if mask is not None:
                a, p = a + p.shape[0], p[torch.from_numpy(mask[a:a + p.shape[0]])]
            total += p.sum(0)
            count += p.shape[0]
        if not bool(torch.isfinite(total).all()):
            raise AudioError(f"{where or rec_id}: the network's posteriors are not finite (NaN/Inf)")
        return Classification.of(rec_id, self.labels, total / count if count else None, check.count / SAMPLE_RATE,
                                 speech)

    def frame_posteriors(self, blocks: Iterable[np.ndarray], rec_id: str, where: str | None = None
                         ) -> FramePosteriors:
        """Every frame's softmax of a recording (float32; 120,000 x K numbers per hour) and, with speech
        detection, which frames are speech."""
        check = _SampleCheck(where or rec_id)
        vs = self.vad.stream() if self.vad else None
        post = torch.cat([p.float() for p in self._stream(blocks, rec_id, check, vs)])
        if not bool(torch.isfinite(post).all()):
            raise AudioError(f"{where or rec_id}: the network's posteriors are not finite (NaN/Inf)")
        mask, speech = self._speech(vs, post.shape[0])
        return FramePosteriors(rec_id, post, self.frame_period, check.count / SAMPLE_RATE, mask, speech)

    # -- the API -------------------------------------------------------------------------------
    def classify_file(self, path: str | Path) -> Classification:
        """Label and posteriors of an audio file (any format / rate / channels libsndfile reads)."""
        return self.classify_blocks(file_blocks(path), str(path))

    def classify_signal(self, signal: np.ndarray, sample_rate: int, name: str = "signal") -> Classification:
        """Label and posteriors of samples in memory (float in [-1, 1] or int16; [n] or [n, channels])."""
        return self.classify_blocks(signal_blocks(signal, sample_rate, name), name)

    def timeline(self, source: str | Path | np.ndarray, sample_rate: int | None = None,
                 window: float = 2.0, shift: float = 0.5, name: str | None = None):
        """:class:`ser.infer.timeline.Timeline` of a file or a signal: sliding-window posteriors."""
        meter = LevelMeter(SAMPLE_RATE)   # the level strip of write_png
        if isinstance(source, (str, Path)):
            fp = self.frame_posteriors(meter(file_blocks(source)), name or str(source), str(source))
        else:
            if sample_rate is None:
                raise ValueError("timeline of a signal needs its sample_rate")
            fp = self.frame_posteriors(meter(signal_blocks(source, sample_rate, name or "signal")), name or "signal")
        tl = Timeline.from_frames(fp, self.labels, window, shift)
        tl.level = meter.level_db()
        return tl

