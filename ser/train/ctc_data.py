"""CTC training data: features and character labels of a data dir, and length-bucketed minibatches.

:func:`load_ctc_data` reads ``feats.scp`` and ``text`` of a Kaldi data dir, normalises each transcript to
the alphabet (``ser.ctc.text``) and skips, counting and logging each, the utterances whose transcript is
empty after normalisation and those too short for their label sequence (CTC needs one frame per label
plus one per repeated pair; torch's ctc_loss would return infinity -- DeepSpeech's importers drop such
"too short" samples too).  The features stay on disk (:class:`ser.io.batching.LazyMatrixTable`: per utterance
its ark offset and length); a minibatch reads and decodes its utterances when it is made, on a background
thread a few minibatches ahead (:func:`ser.io.prefetch.prefetch`), so a process holds its minibatches, not
the corpus; the minibatches are the same tensors, in the same order, as with the features in memory.

:class:`CtcBatches` sorts utterances by length and cuts them into minibatches of at most ``max_frames``
padded frames (the longest utterance times the number of utterances); every pass visits them from the
shortest to the longest, as DeepSpeech does (``util/sample_collections.py``: samples are read "from
shortest to longest", no shuffling; SortaGrad of Deep Speech 2 does it for the first epoch only), so a
resumed run sees the same order.  DeepSpeech batches a fixed number of utterances
(``--train_batch_size``); a frame budget keeps the cost of every minibatch similar on a CPU.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch

from ser.ctc.text import TextStats, ctc_min_frames, encode, normalize_transcript
from ser.io.datadir import DataDir
from ser.io.batching import LazyMatrixTable, Table
from ser.io.prefetch import prefetch

log = logging.getLogger(__name__)

__all__ = ["CtcData", "load_ctc_data", "CtcMinibatch", "CtcBatches", "split_held_out", "length_buckets", "pad_batch"]


@dataclass
class CtcData:
    keys: list[str]
    feats: Table  # LazyMatrixTable when loaded; a MatrixTable works the same
    labels: list[list[int]]   # alphabet ids per utterance
    texts: dict[str, str]     # normalised transcripts
    skipped: dict[str, int]   # reason -> utterances skipped

    def subset(self, keys: Sequence[str]) -> "CtcData":
        idx = {k: i for i, k in enumerate(self.keys)}
        keys = list(keys)
        return CtcData(keys, self.feats, [self.labels[idx[k]] for k in keys], {k: self.texts[k] for k in keys},
                       dict(self.skipped))

    @property
    def num_frames(self) -> int:
        return sum(self.feats.num_rows(k) for k in self.keys)


def load_ctc_data(data_dir: str | Path, skip_too_short: bool = True) -> CtcData:
    """Features and normalised labels of ``data_dir`` (see the module docstring); ``skip_too_short=False``
    keeps the utterances CTC could not train on (for scoring)."""
    d = DataDir.load(data_dir)
    d.validate(need_text=True, need_feats=True)
    stats = TextStats()
    texts = {u: normalize_transcript(t, stats) for u, t in d.text.items()}
    feats = LazyMatrixTable.from_scp(Path(data_dir) / "feats.scp", d.utts)
    keys, labels, skipped = [], [], {"empty_transcript": 0, "too_short_for_labels": 0}
    for u in d.utts:
        lab = encode(texts[u])
        if not lab:
            skipped["empty_transcript"] += 1
            log.warning("%s: utterance %s: empty transcript after normalisation (%r); skipped", data_dir, u,
                        d.text[u])
            continue
        if skip_too_short and ctc_min_frames(lab) > feats.num_rows(u):
            skipped["too_short_for_labels"] += 1
            log.warning("%s: utterance %s: %d frames for %d labels (CTC needs %d); skipped", data_dir, u,
                        feats.num_rows(u), len(lab), ctc_min_frames(lab))
            continue
        keys.append(u)
        labels.append(lab)
    log.info("%s: %d of %d utterances, %d frames; %s; skipped: %s", data_dir, len(keys), len(d.utts),
             sum(feats.num_rows(k) for k in keys), stats.summary(),
             ", ".join(f"{k} {v}" for k, v in skipped.items()))
    if not keys:
        raise ValueError(f"{data_dir}: no utterance left for CTC training")
    return CtcData(keys, feats, labels, {k: texts[k] for k in keys}, skipped)


def split_held_out(keys: Sequence[str], num: int, seed: int) -> tuple[list[str], list[str]]:
    """(train, held-out): ``num`` random utterances held out for validation (Kaldi get_egs.sh's
    ``num_utts_subset``), seeded."""
    if not 0 <= num < len(keys):
        raise ValueError(f"cannot hold out {num} of {len(keys)} utterances")
    rng = np.random.default_rng([seed, 81])
    held = set(rng.choice(len(keys), num, replace=False).tolist())
    return [k for i, k in enumerate(keys) if i not in held], [k for i, k in enumerate(keys) if i in held]


@dataclass
class CtcMinibatch:
    keys: list[str]
    feats: torch.Tensor        # [B, T, F], zero after each utterance's end
    lengths: torch.Tensor      # [B] frames
    targets: torch.Tensor      # [sum of label lengths] concatenated label ids
    target_lengths: torch.Tensor  # [B]

    @property
    def num_frames(self) -> int:
        return int(self.lengths.sum())

    def to(self, device: torch.device | str) -> "CtcMinibatch":
        return CtcMinibatch(self.keys, self.feats.to(device), self.lengths.to(device), self.targets.to(device),
                            self.target_lengths.to(device))


def length_buckets(lengths: Sequence[int], max_frames: int) -> list[list[int]]:
    """Indexes sorted by length (ties by index) cut into groups of at most ``max_frames`` padded frames (the
    longest length times the group size); an utterance longer than the budget is a group of its own."""
    order = sorted(range(len(lengths)), key=lambda i: (lengths[i], i))
    groups: list[list[int]] = []
    cur: list[int] = []
    for i in order:  # ascending lengths: the newest index is the longest of its group
        if cur and (len(cur) + 1) * lengths[i] > max_frames:
            groups.append(cur)
            cur = []
        cur.append(i)
    if cur:
        groups.append(cur)
    return groups


def pad_batch(mats: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """[B, T_max, F] with zeros after each matrix's end, and the lengths [B]."""
    lengths = torch.tensor([m.shape[0] for m in mats], dtype=torch.int64)
    x = torch.zeros(len(mats), int(lengths.max()), mats[0].shape[1])
    for b, m in enumerate(mats):
        x[b, :m.shape[0]] = m
    return x, lengths


def make_minibatch(data: CtcData, index: Sequence[int]) -> CtcMinibatch:
    keys = [data.keys[i] for i in index]
    x, lengths = pad_batch([data.feats[k] for k in keys])
    labs = [data.labels[i] for i in index]
    return CtcMinibatch(keys, x, lengths, torch.tensor([c for lab in labs for c in lab], dtype=torch.int64),
                        torch.tensor([len(lab) for lab in labs], dtype=torch.int64))


class CtcBatches:
    """Length-bucketed minibatches of at most ``max_frames`` padded frames, shortest first;
    ``prefetch_depth`` minibatches made ahead on a background thread (0: on the caller's)."""

    def __init__(self, data: CtcData, max_frames: int, prefetch_depth: int = 2) -> None:
        self.data = data
        self.prefetch_depth = prefetch_depth
        self.batches = length_buckets([data.feats.num_rows(k) for k in data.keys], max_frames)

    def __len__(self) -> int:
        return len(self.batches)

    def iterate(self, start: int = 0) -> Iterator[CtcMinibatch]:
        """The minibatches of a pass from position ``start``."""
        return prefetch((make_minibatch(self.data, b) for b in self.batches[start:]), self.prefetch_depth)
