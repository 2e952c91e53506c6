"""Speech activity detection for inference: Silero VAD's network, run over a whole recording.

Why Silero (the ``silero-vad`` wheel, MIT): its model ships inside the wheel (no download at run time),
its only dependencies are torch and packaging, and it is a trained speech/non-speech network that
rejects white noise, tones and silence (measured: speech probability < 0.03 on all three), where an
energy or GMM detector (Kaldi's ``compute-vad``, WebRTC's VAD) calls any loud stationary sound speech.

The network (``silero_vad/data/silero_vad_16k.safetensors``, the layers of the wheel's
``silero_vad/tinygrad_model.py``): every 512 samples (32 ms at 16 kHz) one probability, from the chunk
and the 64 samples before it (zeros before the recording) -> right reflect pad of 64 -> STFT by a
conv (256 taps, shift 128, 4 frames) -> magnitude -> four conv+ReLU layers -> an LSTM cell whose state
runs across the chunks -> ReLU, 1x1 conv, sigmoid.  The wheel runs it one chunk per call (TorchScript,
``silero_vad.jit``); here the convolutions of all chunks of a block run in one batch and the LSTM over
the block's sequence, with the state and the 64 context samples carried between blocks, so the
probabilities are those of the chunk-by-chunk model (tested against ``silero_vad.jit``) at a fraction of
the cost.  The last partial chunk is zero padded, as ``get_speech_timestamps`` pads it.

The probabilities become speech segments with the wheel's own ``get_speech_timestamps_from_probs``
(threshold 0.5 with hysteresis down to 0.35, speech >= 250 ms, gaps >= 100 ms, 30 ms padding: its
defaults).  :func:`speech_mask` marks an output frame of the emotion network as speech when the
centre of its first MFCC window lies in a segment.
"""

from __future__ import annotations

import functools
import importlib.util
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
import torch
from torch import nn

CHUNK = 512       # samples per probability at 16 kHz
CONTEXT = 64      # samples of the previous chunk each chunk sees
SAMPLE_RATE = 16000
JIT = "silero_vad.jit"


def _wheel_data() -> Path:
    """The silero-vad wheel's data dir, found without importing the package (its ``__init__`` sets
    torch's thread count to 1 for the whole process)."""
    spec = importlib.util.find_spec("silero_vad")
    if spec is None or spec.origin is None:
        raise ValueError("speech detection needs the silero-vad package (pip install silero-vad), or --vad false")
    return Path(spec.origin).parent / "data"


@functools.lru_cache(maxsize=1)
def _jit_weights() -> dict[str, torch.Tensor]:
    """The state dict of the wheel's TorchScript model (read once per process).  torch.jit.load is deprecated
    in favour of torch.export, which cannot read the wheel's file; torch is pinned (tools/install.sh)."""
    path = _wheel_data() / JIT
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "`torch.jit.load` is deprecated", DeprecationWarning)
            return torch.jit.load(str(path), map_location="cpu").state_dict()
    except (OSError, RuntimeError) as e:
        raise ValueError(f"{path}: cannot load the silero-vad model: {str(e).splitlines()[0]}") from e


class SileroVad(nn.Module):
    """Silero VAD v5/v6, 16 kHz, as PyTorch layers (see the module docstring)."""

    def __init__(self) -> None:
        super().__init__()
        self.stft = nn.Conv1d(1, 258, 256, stride=128, bias=False)
        self.convs = nn.ModuleList([nn.Conv1d(129, 128, 3, padding=1), nn.Conv1d(128, 64, 3, stride=2, padding=1),
                                    nn.Conv1d(64, 64, 3, stride=2, padding=1), nn.Conv1d(64, 128, 3, padding=1)])
        self.lstm = nn.LSTM(128, 128)
        self.out = nn.Conv1d(128, 1, 1)

    @classmethod
    def from_wheel(cls) -> "SileroVad":
        """The 16 kHz weights of the wheel's ``silero_vad.jit`` (the model ``load_silero_vad()`` returns;
        the wheel's safetensors file holds other weights)."""
        w = _jit_weights()
        m = cls()
        m.stft.weight.data.copy_(w["_model.stft.forward_basis_buffer"])
        for i, c in enumerate(m.convs):
            c.weight.data.copy_(w[f"_model.encoder.{i}.reparam_conv.weight"])
            c.bias.data.copy_(w[f"_model.encoder.{i}.reparam_conv.bias"])
        for k in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            getattr(m.lstm, f"{k}_l0").data.copy_(w[f"_model.decoder.rnn.{k}"])
        m.out.weight.data.copy_(w["_model.decoder.decoder.2.weight"])
        m.out.bias.data.copy_(w["_model.decoder.decoder.2.bias"])
        return m.eval()

    @torch.inference_mode()
    def forward(self, x: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor] | None = None
                ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """Probabilities [n] of ``x`` [CONTEXT + n * CHUNK] (float in [-1, 1]: the context, then n chunks)
        and the LSTM state after them."""
        frames = x.unfold(0, CONTEXT + CHUNK, CHUNK)                             # [n, 576]
        frames = nn.functional.pad(frames[:, None], (0, CONTEXT), mode="reflect")  # [n, 1, 640]
        s = self.stft(frames)
        h = (s[:, :129] ** 2 + s[:, 129:] ** 2).sqrt()
        for c in self.convs:
            h = torch.relu(c(h))
        y, state = self.lstm(h[:, :, 0], state)                                 # unbatched: [n, 128]
        return torch.sigmoid(self.out(torch.relu(y)[:, :, None]))[:, 0, 0], state


class VadStream:
    """Speech probabilities of a recording fed in sample blocks of any size (16 kHz, int16 units):
    ``feed`` each block, then ``finish`` returns one probability per 512 samples."""

    def __init__(self, model: SileroVad) -> None:
        self.model = model
        self.buf = np.zeros(CONTEXT, np.float32)  # context (zeros before the recording) + pending samples
        self.state: tuple[torch.Tensor, torch.Tensor] | None = None
        self.parts: list[np.ndarray] = []
        self.count = 0

    def feed(self, x: np.ndarray) -> None:
        self.count += x.size
        self.buf = np.concatenate([self.buf, np.asarray(x, np.float32) / np.float32(32768.0)])
        n = (self.buf.size - CONTEXT) // CHUNK
        if n:
            self._run(self.buf[:CONTEXT + n * CHUNK])
            self.buf = self.buf[n * CHUNK:]

    def finish(self) -> np.ndarray:
        rest = self.buf.size - CONTEXT
        if rest:
            self._run(np.concatenate([self.buf, np.zeros(CHUNK - rest, np.float32)]))
            self.buf = self.buf[-CONTEXT:]
        return np.concatenate(self.parts) if self.parts else np.zeros(0, np.float32)

    def _run(self, x: np.ndarray) -> None:
        p, self.state = self.model(torch.from_numpy(np.ascontiguousarray(x)), self.state)
        self.parts.append(p.numpy().copy())


@dataclass
class VadOptions:
    """``get_speech_timestamps`` options (silero-vad's defaults)."""

    threshold: float = 0.5
    min_speech_ms: int = 250
    min_silence_ms: int = 100
    speech_pad_ms: int = 30


def speech_segments(probs: np.ndarray, num_samples: int, opts: VadOptions = VadOptions()) -> list[tuple[int, int]]:
    """(start, end) sample ranges of speech, by silero-vad's ``get_speech_timestamps_from_probs``."""
    threads = torch.get_num_threads()
    try:  # importing the package sets torch's thread count to 1 (silero_vad/model.py): undone
        from silero_vad.utils_vad import get_speech_timestamps_from_probs
    finally:
        torch.set_num_threads(threads)
    ts = get_speech_timestamps_from_probs(
        [float(p) for p in probs], sampling_rate=SAMPLE_RATE, threshold=opts.threshold,
        min_speech_duration_ms=opts.min_speech_ms, min_silence_duration_ms=opts.min_silence_ms,
        speech_pad_ms=opts.speech_pad_ms, audio_length_samples=num_samples)
    return [(int(t["start"]), int(t["end"])) for t in ts]


def speech_mask(segments: list[tuple[int, int]], num_frames: int, frame_shift: int, centre: float) -> np.ndarray:
    """[num_frames] bool: frame j (first sample ``j * frame_shift``, centre ``+ centre``) lies in a segment."""
    c = np.arange(num_frames) * frame_shift + centre
    mask = np.zeros(num_frames, bool)
    for a, b in segments:
        mask |= (c >= a) & (c < b)
    return mask


class SpeechDetector:
    """Speech segments of recordings (one :class:`SileroVad`, shared)."""

    def __init__(self, opts: VadOptions = VadOptions()) -> None:
        self.model, self.opts = SileroVad.from_wheel(), opts

    def stream(self) -> VadStream:
        return VadStream(self.model)

    def tap(self, blocks: Iterable[np.ndarray], stream: VadStream) -> Iterator[np.ndarray]:
        """The blocks, each also fed to ``stream``."""
        for x in blocks:
            stream.feed(x)
            yield x

    def segments(self, stream: VadStream) -> list[tuple[int, int]]:
        return speech_segments(stream.finish(), stream.count, self.opts)
