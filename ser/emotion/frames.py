"""Frame-level emotion examples: training chunks labelled per output frame, evaluation chunks.

Paper 1 (Sec. 3.4): every frame carries the label of its utterance; the network is trained
with frame-level cross-entropy.  Frames are the network's output frames, one every
``frame_subsampling_factor`` (3) input frames.

Training (:class:`FrameEgs`).  Each epoch every training utterance of T frames is cut into
``ceil(T / W)`` chunks of W input frames (``chunk_width``, a multiple of 3) laid end to end
from a random start in ``[-(ceil(T/W) W - T), 0]`` (seeded by ``(seed, epoch)``), so the
chunk boundaries and the frame phase (the input frame an output frame sits on, mod 3) change
from epoch to epoch as Kaldi's frame shifts do.  An output frame whose input frame lies
outside ``[0, T)`` has target -1 and is ignored.  Chunks of all utterances are shuffled
together and cut into minibatches of ``minibatch_size`` chunks (the last one may be smaller).
Inputs carry the full model context (``left_context``/``right_context``; padding with a
layer's smaller context would shift the output grid), edges padded by repeating the first /
last frame (Kaldi's ExtractRowRangeWithPadding).

Evaluation (:func:`utterance_outputs`).  Each utterance is cut into chunks of W input frames
from frame 0, with context from the utterance itself (clamped at its edges), computed in
batches, and the outputs past the utterance's ``ceil(T / 3)`` frames are dropped.  For a
TDNN in eval mode with per-frame i-vectors this equals one forward pass over the whole padded
utterance (tested), at any W.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Mapping, Sequence

import numpy as np
import torch

from ser.io.batching import FeatureSet, LazyMatrixTable, ModelContext, load_features, model_inputs
from ser.io.datadir import DataDir


def ivector_dir_arg(arg: str) -> str | None:
    """A program's ``<ivector-dir>`` argument: ``none`` -> None (no i-vectors; ``train_chain``'s
    convention), any other value -> itself."""
    return None if arg == "none" else arg


def load_parts(data_dirs: Sequence[str | Path], ivector_dir: str | Path | None) -> FeatureSet:
    """Features (and i-vectors) of the utterances of several data dirs in one FeatureSet
    (e.g. a fold's train and valid parts).  Unlike :func:`load_features`, which drops an
    utterance without a usable i-vector with a warning, a lost utterance is an error here:
    a fold must be trained and tested on all of its utterances.  The matrices stay in their arks
    (:class:`LazyMatrixTable`): a minibatch reads its utterances (:func:`model_inputs`)."""
    parts = [load_features(d, ivector_dir, lazy=True) for d in data_dirs]
    for d, p in zip(data_dirs, parts):
        have = set(p.feats.keys)
        lost = [u for u in DataDir.load(d, validate=False).utts if u not in have]
        if lost:
            raise ValueError(f"{d}: utterance {lost[0]!r} has no usable i-vector in {ivector_dir} "
                             f"({len(lost)} such)")
    if len(parts) == 1:
        return parts[0]
    feats = LazyMatrixTable.concat([p.feats for p in parts])
    ivecs = None if ivector_dir is None else LazyMatrixTable.concat([p.ivectors for p in parts])
    return FeatureSet(feats, ivecs, parts[0].ivector_period)


def context_of(model) -> ModelContext:
    """The FULL model's context (a pruned body keeps it: padding with a layer's smaller context
    would shift the output grid)."""
    return ModelContext(int(model.left_context), int(model.right_context),
                        int(model.frame_subsampling_factor))


@dataclass
class FrameMinibatch:
    """Chunks ``(utt_idx[b], first_frame[b])`` of ``num_out`` output frames each;
    ``target`` [B, num_out] is the class of each output frame, -1 where there is none."""

    utt_idx: torch.Tensor
    first_frame: torch.Tensor
    num_out: int
    target: torch.Tensor

    @property
    def num_frames(self) -> int:
        return int((self.target >= 0).sum())

    @property
    def batch_size(self) -> int:
        return int(self.utt_idx.shape[0])

    def select(self, rows: Sequence[int]) -> "FrameMinibatch":
        """The chunks ``rows`` (e.g. one DDP rank's share, ser.ddp.shard)."""
        idx = torch.as_tensor(list(rows), dtype=torch.int64)
        return FrameMinibatch(self.utt_idx[idx], self.first_frame[idx], self.num_out, self.target[idx])


def chunk_starts(num_frames: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """First input frames of ``ceil(T / W)`` end-to-end chunks covering ``[0, T)``, the
    first starting at a random ``-r``, ``0 <= r <= ceil(T/W) W - T``."""
    n = max(1, math.ceil(num_frames / width))
    r = int(rng.integers(0, n * width - num_frames + 1))
    return -r + width * np.arange(n, dtype=np.int64)


def frame_targets(first_frame: torch.Tensor, num_out: int, fsf: int, lengths: torch.Tensor,
                  labels: torch.Tensor) -> torch.Tensor:
    """[B, num_out]: ``labels[b]`` where input frame ``first + fsf*j`` is inside the
    utterance (``0 <= t < lengths[b]``), else -1."""
    t = first_frame[:, None] + fsf * torch.arange(num_out, dtype=torch.int64)[None, :]
    inside = (t >= 0) & (t < lengths[:, None])
    return torch.where(inside, labels[:, None].expand(-1, num_out), torch.full_like(t, -1))


class FrameEgs:
    """Training chunks of the utterances ``utts`` with class indices ``labels[utt]``."""

    def __init__(self, fs: FeatureSet, utts: Sequence[str], labels: Mapping[str, int],
                 ctx: ModelContext, chunk_width: int = 150, minibatch_size: int = 64,
                 seed: int = 0) -> None:
        fsf = ctx.frame_subsampling_factor
        if chunk_width <= 0 or chunk_width % fsf:
            raise ValueError(f"chunk width {chunk_width} must be a positive multiple of the frame "
                             f"subsampling factor {fsf}")
        if minibatch_size <= 0:
            raise ValueError(f"minibatch size must be positive, got {minibatch_size}")
        missing = [u for u in utts if u not in fs.feats]
        if missing:
            raise ValueError(f"no features for training utterance {missing[0]!r} "
                             f"({len(missing)} missing)")
        self.fs, self.ctx, self.seed = fs, ctx, int(seed)
        self.width, self.minibatch_size = int(chunk_width), int(minibatch_size)
        self.num_out = self.width // fsf
        self.utt_idx = torch.tensor([fs.feats.index[u] for u in utts], dtype=torch.int64)
        self.labels = torch.tensor([int(labels[u]) for u in utts], dtype=torch.int64)
        self.lengths = fs.feats.lengths[self.utt_idx]
        self.num_chunks = int(sum(max(1, math.ceil(int(t) / self.width)) for t in self.lengths))

    def __len__(self) -> int:
        return math.ceil(self.num_chunks / self.minibatch_size)

    def minibatches(self, epoch: int) -> Iterator[FrameMinibatch]:
        """The epoch's minibatches, a function of ``(seed, epoch)`` only."""
        rng = np.random.default_rng([self.seed, epoch])
        owner, starts = [], []
        for i, t in enumerate(self.lengths.tolist()):
            s = chunk_starts(t, self.width, rng)
            owner.append(np.full(len(s), i))
            starts.append(s)
        owner_a, starts_a = np.concatenate(owner), np.concatenate(starts)
        order = rng.permutation(len(owner_a))
        for k in range(0, len(order), self.minibatch_size):
            sel = torch.from_numpy(order[k:k + self.minibatch_size])
            own = torch.from_numpy(owner_a)[sel]
            first = torch.from_numpy(starts_a)[sel]
            target = frame_targets(first, self.num_out, self.ctx.frame_subsampling_factor,
                                   self.lengths[own],
                                   self.labels[own])
            yield FrameMinibatch(self.utt_idx[own], first, self.num_out, target)

    def inputs(self, mb: FrameMinibatch) -> tuple[torch.Tensor, torch.Tensor | None]:
        return model_inputs(self.fs, mb.utt_idx, self.ctx, mb.first_frame, mb.num_out)


def utterance_outputs(fn: Callable[[torch.Tensor, torch.Tensor | None], torch.Tensor],
                      fs: FeatureSet, utts: Sequence[str], ctx: ModelContext, chunk_width: int = 300,
                      batch_size: int = 32, phase: int = 0,
                      device: torch.device | str = "cpu") -> list[torch.Tensor]:
    """``fn(x, ivector) -> [B, n, D]`` on every output frame of each utterance: a list of
    [ceil((T - phase) / fsf), D] tensors (CPU), output j at input frame ``phase + fsf * j``."""
    fsf = ctx.frame_subsampling_factor
    if chunk_width <= 0 or chunk_width % fsf:
        raise ValueError(f"chunk width {chunk_width} must be a positive multiple of {fsf}")
    num_out = chunk_width // fsf
    pieces: list[tuple[int, int]] = []  # (utterance position, first frame)
    counts = []
    for i, u in enumerate(utts):
        t = fs.feats.num_rows(u)
        n = max(1, math.ceil((t - phase) / fsf))
        counts.append(n)
        pieces += [(i, phase + chunk_width * k) for k in range(math.ceil(n / num_out))]
    outs: list[list[torch.Tensor]] = [[] for _ in utts]
    index = torch.tensor([fs.feats.index[u] for u in utts], dtype=torch.int64)
    for k in range(0, len(pieces), batch_size):
        pos = torch.tensor([p for p, _ in pieces[k:k + batch_size]], dtype=torch.int64)
        first = torch.tensor([f for _, f in pieces[k:k + batch_size]], dtype=torch.int64)
        x, iv = model_inputs(fs, index[pos], ctx, first, num_out)
        y = fn(x.to(device), None if iv is None else iv.to(device)).float().cpu()
        for b, p in enumerate(pos.tolist()):
            outs[p].append(y[b])
    return [torch.cat(o)[:n] for o, n in zip(outs, counts)]
