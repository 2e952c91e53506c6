"""Input features of the i-vector pipeline: online CMN, splicing, transform, batching by speaker.

Mirrors Kaldi's
- ``src/feat/online-feature.cc`` (``OnlineCmvn``: ``ComputeStatsForFrame``, ``SmoothOnlineCmvnStats``,
  ``GetState``) as used by ``apply-cmvn-online`` (``src/online2bin/apply-cmvn-online.cc``) and by
  ``OnlineIvectorFeature`` (``src/online2/online-ivector-feature.cc``);
- ``splice-feats`` (``src/feat/feature-functions.cc`` ``SpliceFrames``: edge frames repeated);
- ``transform-feats`` with an affine ``[A | b]`` matrix (``src/featbin/transform-feats.cc``);
- ``subsample-feats --n`` (keep frames 0, n, 2n, ...);
- ``matrix-sum scp:cmvn.scp`` → ``global_cmvn.stats`` (2 × (dim+1) Kaldi CMVN-stats layout).

Online CMN is computed exactly as Kaldi's defaults (``conf/online_cmvn.conf`` empty): ``cmn_window``
600, ``speaker_frames`` 600, ``global_frames`` 200, ``norm_means`` true, ``norm_vars`` false.  For frame
``t`` the window is frames ``max(0, t-599) .. t`` of the current utterance; when it holds fewer than 600
frames it is topped up with up to 600 frames' worth of the speaker's mean (all frames of the speaker's
earlier utterances, only when speaker carry-over is on) and then up to 200 frames of the global mean.
It is vectorised with cumulative sums over each utterance's frames (float64, like Kaldi's double stats); Kaldi's
``modulus`` only changes how Kaldi caches stats, not the result.  Variance normalisation is not
implemented (Kaldi's online i-vector recipes never use it).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from typing import Iterator, Sequence

import numpy as np
import torch

from ser.io.datadir import DataDir
from ser.io.tables import read_matrix

log = logging.getLogger(__name__)




# ---------------------------------------------------------------------------------------------
# options
@dataclass(frozen=True)
class OnlineCmvnOptions:
    """``OnlineCmvnOptions`` (src/feat/online-feature.h) restricted to mean normalisation."""

    cmn_window: int = 600
    speaker_frames: int = 600
    global_frames: int = 200

    def to_conf(self) -> str:
        return (f"--cmn-window={self.cmn_window}\n--speaker-frames={self.speaker_frames}\n"
                f"--global-frames={self.global_frames}\n--norm-means=true\n--norm-vars=false\n")

    @classmethod
    def from_conf(cls, text: str) -> "OnlineCmvnOptions":
        kw: dict[str, int] = {}
        for line in text.split("\n"):
            line = line.split("#", 1)[0].strip()
            if not line:
                continue
            if not line.startswith("--") or "=" not in line:
                raise ValueError(f"online_cmvn.conf: bad line {line!r}")
            k, v = line[2:].split("=", 1)
            k = k.replace("-", "_")
            if k in ("cmn_window", "speaker_frames", "global_frames"):
                kw[k] = int(v)
            elif k == "norm_vars" and v.lower() == "true":
                raise ValueError("online_cmvn.conf: --norm-vars=true is not supported")
            elif k in ("norm_means", "norm_vars", "modulus", "ring_buffer_size", "skip_dims"):
                continue
            else:
                raise ValueError(f"online_cmvn.conf: unknown option --{k}")
        return cls(**kw)


@dataclass(frozen=True)
class SpliceOptions:
    left_context: int = 3
    right_context: int = 3

    def to_conf(self) -> str:
        return f"--left-context={self.left_context} --right-context={self.right_context}\n"

    @classmethod
    def from_conf(cls, text: str) -> "SpliceOptions":
        kw = {}
        for tok in text.split():
            k, _, v = tok.lstrip("-").partition("=")
            if k not in ("left-context", "right-context"):
                raise ValueError(f"splice_opts: unknown option {tok!r}")
            kw[k.replace("-", "_")] = int(v)
        return cls(**kw)


# ---------------------------------------------------------------------------------------------
# batches of utterances (whole speakers, utterances in spk2utt order)
@dataclass
class UttBatch:
    """Concatenated frames of several utterances; ``starts[i]:starts[i]+lengths[i]`` is utterance i."""

    utts: list[str]
    spks: list[str]
    feats: torch.Tensor            # (N, dim) float32
    lengths: torch.Tensor          # (U,) int64
    starts: torch.Tensor = field(init=False)

    def __post_init__(self) -> None:
        self.starts = torch.cumsum(self.lengths, 0) - self.lengths

    @property
    def num_frames(self) -> int:
        return int(self.feats.shape[0])

    def utt_index(self) -> torch.Tensor:
        """(N,) utterance index of every frame."""
        return torch.repeat_interleave(torch.arange(len(self.utts), device=self.lengths.device), self.lengths)

    def frame_in_utt(self) -> torch.Tensor:
        """(N,) position of every frame inside its utterance."""
        return torch.arange(self.num_frames, device=self.lengths.device) - self.starts[self.utt_index()]

    def split(self, x: torch.Tensor) -> list[torch.Tensor]:
        return list(torch.split(x, self.lengths.tolist()))


def load_data(data: str | os.PathLike) -> DataDir:
    d = DataDir.load(data)
    if not d.feats:
        raise ValueError(f"{data}: no feats.scp (run steps/make_mfcc.sh first)")
    return d


def speaker_order(d: DataDir, utts: Sequence[str] | None = None) -> list[tuple[str, list[str]]]:
    """(speaker, utterances) in Kaldi's spk2utt order, restricted to ``utts`` if given."""
    keep = set(utts) if utts is not None else None
    out = []
    for spk, us in d.spk2utt.items():
        us = [u for u in us if keep is None or u in keep]
        if us:
            out.append((spk, us))
    return out


def read_feats(d: DataDir, utt: str) -> np.ndarray:
    if utt not in d.feats:
        raise ValueError(f"{d.path}/feats.scp: no entry for utterance {utt!r}")
    m = read_matrix(d.feats[utt], key=utt)
    if m.ndim != 2 or m.shape[0] == 0:
        raise ValueError(f"{d.path}: utterance {utt!r} has empty or malformed features {m.shape}")
    return m


def iter_speaker_batches(d: DataDir, spk_utts: list[tuple[str, list[str]]], max_frames: int,
                         device: torch.device, progress: str | None = None) -> Iterator[UttBatch]:
    """Yield batches made of whole speakers, each about ``max_frames`` frames (at least one speaker)."""
    from ser.progress import progress as show_progress

    utts: list[str] = []
    spks: list[str] = []
    mats: list[np.ndarray] = []
    n = 0
    dim = None
    it = show_progress(spk_utts, desc=progress, unit="spk", disable=progress is None, leave=False)
    for spk, us in it:
        for u in us:
            m = read_feats(d, u)
            if dim is None:
                dim = m.shape[1]
            elif m.shape[1] != dim:
                raise ValueError(f"{d.path}: utterance {u!r} has feature dim {m.shape[1]}, expected {dim}")
            utts.append(u)
            spks.append(spk)
            mats.append(m)
            n += m.shape[0]
        if n >= max_frames:
            yield _make_batch(utts, spks, mats, device)
            utts, spks, mats, n = [], [], [], 0
    if utts:
        yield _make_batch(utts, spks, mats, device)


def _make_batch(utts: list[str], spks: list[str], mats: list[np.ndarray], device: torch.device) -> UttBatch:
    feats = torch.from_numpy(np.concatenate(mats, axis=0)).to(device)
    lengths = torch.tensor([m.shape[0] for m in mats], dtype=torch.int64, device=device)
    return UttBatch(utts, spks, feats, lengths)


# ---------------------------------------------------------------------------------------------
# global CMVN stats
def global_cmvn_stats(d: DataDir, device: torch.device, max_frames: int = 200_000) -> tuple[torch.Tensor, int]:
    """Kaldi-layout stats (2, dim+1) float64 summed over every frame of the data; also the frame count."""
    stats = None
    for b in iter_speaker_batches(d, speaker_order(d), max_frames, device, progress="global cmvn"):
        x = b.feats.double()
        if stats is None:
            stats = torch.zeros(2, x.shape[1] + 1, dtype=torch.float64, device=device)
        stats[0, :-1] += x.sum(0)
        stats[1, :-1] += (x * x).sum(0)
        stats[0, -1] += x.shape[0]
    if stats is None:
        raise ValueError(f"{d.path}: no utterances")
    return stats.cpu(), int(stats[0, -1].item())


# ---------------------------------------------------------------------------------------------
# online CMN
def online_cmn(batch: UttBatch, global_stats: torch.Tensor, opts: OnlineCmvnOptions = OnlineCmvnOptions(),
               carry_speaker: bool = False) -> torch.Tensor:
    """Kaldi ``apply-cmvn-online`` (means only) for every frame of the batch, vectorised.

    ``carry_speaker``: as ``--spk2utt`` (speaker stats accumulated over the speaker's earlier utterances
    of this batch, in order); otherwise every utterance starts from the global stats alone.
    """
    x = batch.feats
    dev = x.device
    dim = x.shape[1]
    gs = global_stats.to(dev, torch.float64)
    gcount = float(gs[0, dim])
    if gcount <= 0:
        raise ValueError("global CMVN stats have zero count")
    gmean = gs[0, :dim] / gcount
    xd = x.double()
    # Prefix sums restart at every utterance (utterance u's block of length+1 rows starts at row
    # starts[u] + u): a sum over the whole batch would carry one utterance's rounding, or a NaN,
    # into every later utterance of the batch.
    zero = torch.zeros(1, dim, dtype=torch.float64, device=dev)
    cs = torch.cat([torch.cumsum(torch.cat([zero, xu]), 0) for xu in batch.split(xd)])
    base = batch.starts + torch.arange(len(batch.utts), device=dev)    # row of each utterance's zero
    uidx = batch.utt_index()
    t = batch.frame_in_utt()
    b = base[uidx]
    lo = torch.clamp(t - opts.cmn_window + 1, min=0)
    wsum = cs[b + t + 1] - cs[b + lo]
    wcount = (t + 1 - lo).double()

    need = (opts.cmn_window - wcount).clamp(min=0)
    if carry_speaker:
        # speaker stats before utterance u: sums over earlier utterances of the same speaker
        usum = cs[base + batch.lengths]                                  # (U, dim)
        ucount = batch.lengths.double()[:, None]
        sizes = torch.bincount(_group_ids(batch.spks, dev)).tolist()     # utterances per speaker, in order
        ssum = _exclusive_cumsum(usum, sizes)                            # restarts at every speaker
        scount = _exclusive_cumsum(ucount, sizes)[:, 0]
        sc = scount[uidx]
        from_spk = torch.minimum(torch.minimum(need, torch.full_like(need, float(opts.speaker_frames))), sc)
        smean = ssum / scount.clamp(min=1.0)[:, None]
        wsum = wsum + from_spk[:, None] * smean[uidx]
        wcount = wcount + from_spk
        need = (opts.cmn_window - wcount).clamp(min=0)
    from_glob = need.clamp(max=float(opts.global_frames))
    wsum = wsum + from_glob[:, None] * gmean[None, :]
    wcount = wcount + from_glob
    return (xd - wsum / wcount[:, None]).to(x.dtype)


def _group_ids(keys: Sequence[str], device: torch.device) -> torch.Tensor:
    ids, last, k = [], None, -1
    for s in keys:
        if s != last:
            k += 1
            last = s
        ids.append(k)
    return torch.tensor(ids, dtype=torch.int64, device=device)


def _exclusive_cumsum(v: torch.Tensor, sizes: list[int]) -> torch.Tensor:
    """Row i: the sum of the rows before i within its group (consecutive groups of ``sizes`` rows)."""
    return torch.cat([torch.cumsum(torch.cat([torch.zeros_like(g[:1]), g[:-1]]), 0) for g in torch.split(v, sizes)])


# ---------------------------------------------------------------------------------------------
# splice / transform / subsample
def splice(batch: UttBatch, x: torch.Tensor, opts: SpliceOptions = SpliceOptions()) -> torch.Tensor:
    """``splice-feats``: (N, dim) → (N, (l+1+r)·dim), edge frames repeated within each utterance."""
    dev = x.device
    uidx = batch.utt_index()
    t = batch.frame_in_utt()
    start = batch.starts[uidx]
    last = batch.lengths[uidx] - 1
    offs = torch.arange(-opts.left_context, opts.right_context + 1, device=dev)
    idx = start[:, None] + torch.minimum(torch.clamp(t[:, None] + offs[None, :], min=0), last[:, None])
    return torch.index_select(x, 0, idx.flatten()).reshape(x.shape[0], idx.shape[1] * x.shape[1])


def apply_transform(mat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``transform-feats``: ``mat`` is (out, in) or affine (out, in+1)."""
    mat = mat.to(x.device, x.dtype)
    if mat.shape[1] == x.shape[1]:
        return x @ mat.T
    if mat.shape[1] == x.shape[1] + 1:
        return torch.addmm(mat[:, -1], x, mat[:, :-1].T)
    raise ValueError(f"transform has {mat.shape[1]} columns, features have dim {x.shape[1]}")


def subsample_mask(batch: UttBatch, n: int) -> torch.Tensor:
    """``subsample-feats --n``: keep frames 0, n, 2n... of every utterance."""
    return (batch.frame_in_utt() % n) == 0 if n > 1 else torch.ones(batch.num_frames, dtype=torch.bool,
                                                                     device=batch.feats.device)


def evenly_spaced(items: Sequence[str], n: int) -> list[str]:
    """``utils/subset_scp.pl N``: N entries spread evenly over the list (all if fewer)."""
    if n <= 0 or n >= len(items):
        return list(items)
    idx = np.floor(np.arange(n) * (len(items) / n)).astype(int)
    return [items[i] for i in idx]
