"""Chain training examples: whole utterances (flat-start pass) and tolerance-based chunks.

Mirrors (the chunks of pass 2 are written once by steps/chain/get_egs.sh into shards,
ser.train.egs_shards, and read memory-mapped; the whole utterances of pass 1 are cut from
in-memory tensors):

* ``steps/nnet3/chain/e2e/get_egs_e2e.sh`` / ``src/chainbin/nnet3-chain-e2e-get-egs.cc``
  (:class:`E2eEgs`): one example per utterance, the whole-utterance numerator graph
  (``num.pt`` of stage 5), input = the utterance with ``left_context``/``right_context``
  frames of padding made by repeating the first/last frame, one i-vector row per
  utterance chosen as ``RandInt(-egs_left_context, -egs_left_context + T - 1) /
  ivector_period`` clamped to the matrix (the code's actual choice, quirk included);
  minibatches by ``--minibatch-size`` rules such as ``150=128,64/300=64,32/600=32,16/1200=8``
  (``src/nnet3/nnet-example-utils.cc``, ExampleMergingConfig: the rule whose example size is
  closest to the example's number of input frames gives the minibatch size).
* ``steps/nnet3/chain/get_egs.sh`` / ``src/chainbin/nnet3-chain-get-egs.cc`` with
  ``--constrained false`` (:class:`ChunkEgs`): utterances cut by Kaldi's UtteranceSplitter
  (:class:`UtteranceSplitter`; ``--num-frames 150,110,100`` rounded up to multiples of the
  frame-subsampling factor = 150,111,102; 0 to 2 "alternative" chunks per utterance plus any
  number of principal ones; the same cost function, split pool, random reversal and
  gap/overlap distribution), each chunk with the unconstrained numerator of the phones the
  alignment allows in it (:func:`ser.chain.supervision.make_chunk_supervision`), one
  i-vector row chosen as above with the chunk's first frame, 64 chunks of one width per
  minibatch (``--num-chunk-per-minibatch``).
* ``nnet3-chain-copy-egs --frame-shift`` (:func:`kaldi_frame_shift`): feature time indexes
  are shifted by s = 0, 1, 2 and the supervision by s rounded to the closest multiple of
  the subsampling factor, i.e. the output frames see the input moved by 0, -1, +1 frames.
  Kaldi rotates s per archive and pass; here s = epoch % 3 (both loaders).
* ``get_egs.sh`` held-out subsets (:func:`split_valid`): 300 random utterances for the
  valid set (with every perturbed copy of them, via utt2uniq), 300 others for the
  train-diagnostic set; training uses the rest.

Feature values: as stored, i.e. Kaldi's compressed matrices when ``features.compress`` is on
(ser.io.compressed), which is what Kaldi's chunk egs hold (``nnet3-chain-get-egs`` keeps compressed
input features in their stored format).

Deviations (also in the class docstrings): egs are not compressed again (Kaldi's ``eg.Compress()``
re-compresses the e2e egs' whole utterances with CM and each eg's one-row i-vector with CM2, and the
chunk egs' features when they were stored uncompressed); e2e minibatches
hold utterances of different lengths (Kaldi speed-perturbs them to a few allowed lengths so
that a minibatch has one length) -- inputs are padded by repeating the last frame and
``ChainMinibatch.num_output_frames`` tells the objective which output frames are real;
the utterances, sorted by length, are grouped by the rule closest to their size (Kaldi groups
equal-sized examples), each group is cut into minibatches of its rule's size and its last, smaller
minibatch is kept; partial chunk minibatches are dropped as Kaldi's merger does
at the end of an archive, but a different random subset each epoch; shuffling is a full
per-epoch permutation of the minibatches (Kaldi: a 5000-eg shuffle buffer).
"""

from __future__ import annotations

import logging
import math
import random
import re
from dataclasses import dataclass
from typing import Iterator, Mapping, Sequence

import numpy as np
import torch

from ser.chain.graph import ChainGraph
from ser.chain.numerator import NumeratorGraphBatch
from ser.chain.supervision import TOLERANCE, make_chunk_supervision
from ser.io.batching import FeatureSet, ModelContext, model_inputs
from ser.io.prefetch import prefetch
from ser.progress import progress
from ser.train.egs_shards import EgsShard
from ser.train.minibatch import ChainMinibatch

log = logging.getLogger(__name__)

__all__ = [
    "EgsConfig", "split_valid", "HeldOut", "kaldi_frame_shift", "input_offset",
    "parse_minibatch_size", "round_chunk_widths", "UtteranceSplitter", "Chunk",
    "E2eEgs", "ChunkEgs", "make_chunk_examples",
]


@dataclass(frozen=True)
class EgsConfig:
    """The egs options of run_tdnn_1g.sh / get_egs.sh (Kaldi names), the one home of their
    defaults (the loaders' keyword defaults are these; the chunk supervision's tolerances are
    ser.chain.supervision.TOLERANCE)."""

    chunk_width: str = "150,110,100"  # --frames-per-eg (rounded up to multiples of fsf)
    num_chunk_per_minibatch: int = 64
    e2e_minibatch_size: str = "150=128,64/300=64,32/600=32,16/1200=8"  # e2e --minibatch-size rules
    num_valid_utts: int = 300  # get_egs.sh --num-utts-subset


# ------------------------------------------------------------------------------------------
# held-out subsets
# ------------------------------------------------------------------------------------------
@dataclass
class HeldOut:
    train: list[str]  # utterances for training (valid and all their perturbed copies removed)
    valid: list[str]
    train_diagnostic: list[str]  # a subset of ``train``


_SP_PREFIX = re.compile(r"^sp[0-9.]+-")


def split_valid(data: FeatureSet | Sequence[str], num_utts: int = EgsConfig.num_valid_utts, seed: int = 0,
                utt2uniq: Mapping[str, str] | None = None) -> HeldOut:
    """Kaldi get_egs.sh ``--num-utts-subset``: ``num_utts`` random utterances are the valid set,
    extended to every utterance with the same utt2uniq (the speed-perturbed copies; without
    utt2uniq the ``spX-`` prefix of perturb_data_dir_speed.sh is stripped to find them) and
    removed from training; ``num_utts`` further random training utterances form the
    train-diagnostic subset."""
    utts = sorted(data.utts if isinstance(data, FeatureSet) else data)
    if utt2uniq is None:
        utt2uniq = data.utt2uniq if isinstance(data, FeatureSet) else {}
    uniq = {u: utt2uniq.get(u, _SP_PREFIX.sub("", u)) for u in utts}
    rng = random.Random(seed)
    shuffled = utts[:]
    rng.shuffle(shuffled)
    chosen = {uniq[u] for u in shuffled[:num_utts]}
    valid = [u for u in utts if uniq[u] in chosen]
    train = [u for u in utts if uniq[u] not in chosen]
    diag = train[:]
    rng.shuffle(diag)
    return HeldOut(train, valid, sorted(diag[:num_utts]))


# ------------------------------------------------------------------------------------------
# options shared by both loaders
# ------------------------------------------------------------------------------------------
def kaldi_frame_shift(epoch: int, frame_subsampling_factor: int = 3) -> int:
    """The --frame-shift given to nnet3-chain-copy-egs for this epoch (0, 1, 2, 0, ...)."""
    return epoch % frame_subsampling_factor


def input_offset(frame_shift: int, frame_subsampling_factor: int = 3) -> int:
    """Net displacement of the input seen by each output frame after ShiftChainExampleTimes:
    inputs move by s, the supervision by s rounded to the closest multiple of fsf, so output
    k sees the original input around ``fsf*k + offset`` (s = 0, 1, 2 -> 0, -1, +1)."""
    sup = frame_subsampling_factor * math.floor(0.5 + frame_shift / frame_subsampling_factor)
    return sup - frame_shift


def parse_minibatch_size(spec: str | int) -> list[tuple[int, list[int]]]:
    """Kaldi --minibatch-size: ``"64"`` or ``"150=128,64/300=64,32"`` -> [(eg_size, sizes)]
    (eg_size 0 when there is a single rule without a size)."""
    s = str(spec).strip()
    rules = []
    parts = s.split("/")
    for part in parts:
        if "=" in part:
            size_s, sizes_s = part.split("=", 1)
        elif len(parts) == 1:
            size_s, sizes_s = "0", part
        else:
            raise ValueError(f"--minibatch-size={spec}: every rule needs an eg size when there are several")
        try:
            eg_size = int(size_s)
            sizes = [int(x.split(":")[-1]) for x in sizes_s.split(",")]
        except ValueError:
            raise ValueError(f"--minibatch-size={spec}: cannot parse {part!r}") from None
        if eg_size < 0 or not sizes or min(sizes) <= 0:
            raise ValueError(f"--minibatch-size={spec}: bad rule {part!r}")
        rules.append((eg_size, sizes))
    if len({r[0] for r in rules}) != len(rules):
        raise ValueError(f"--minibatch-size={spec}: repeated example sizes")
    return rules


def closest_rule(rules: list[tuple[int, list[int]]], eg_size: int) -> int:
    """Index of the rule whose example size is closest (ExampleMergingConfig::MinibatchSize)."""
    return min(range(len(rules)), key=lambda k: abs(rules[k][0] - eg_size))


def _ivector_frames(rng: np.random.Generator, first_frame: np.ndarray, utt_frames: np.ndarray,
                    egs_left_context: int) -> np.ndarray:
    """nnet3-chain-get-egs: the frame whose i-vector row a chunk gets, RandInt(start, start +
    num_input_frames - 1) with start = first_frame - left_context and num_input_frames the
    utterance length (the code's actual choice, quirk included); the row is
    ser.io.batching.ivector_per_chunk's."""
    start = first_frame - egs_left_context
    return start + (rng.random(len(start)) * utt_frames).astype(np.int64)


class _EpochIterator:
    """What both loaders share: deterministic epochs (the order of epoch e depends only on
    (seed, e); ``position`` is the next minibatch of the current epoch; state_dict() /
    load_state_dict() resume exactly) and the examples' network inputs (ser.io.batching)."""

    seed: int
    epoch: int
    position: int
    prefetch_depth: int = 2  # minibatches made ahead on a background thread (0: on the caller's)

    def _init_epochs(self, seed: int) -> None:
        self.seed = int(seed)
        self.epoch = 0
        self.position = 0

    def _epoch_batches(self, epoch: int) -> list[np.ndarray]:
        raise NotImplementedError

    def _make_minibatch(self, batch: np.ndarray, epoch: int) -> ChainMinibatch:
        raise NotImplementedError

    # -- the examples, in shards (ser.train.egs_shards.EgsShard: one in memory, or a job's each) --
    def _setup_shards(self, shards: list[EgsShard], kind: str, left_context: int, right_context: int) -> None:
        if not shards or not any(len(sh) for sh in shards):
            raise ValueError(f"{type(self).__name__}: no examples")
        first = shards[0]
        self.fsf, self.widths = first.frame_subsampling_factor, first.widths
        self.left_context, self.right_context = int(left_context), int(right_context)
        for sh in shards:
            if sh.kind != kind:
                raise ValueError(f"{type(self).__name__}: the shard of job {sh.job + 1} holds {sh.kind} egs")
            if (sh.frame_subsampling_factor, sh.widths) != (self.fsf, self.widths):
                raise ValueError(f"{type(self).__name__}: shard of job {sh.job + 1} has frame-subsampling-factor "
                                 f"{sh.frame_subsampling_factor} and widths {sh.widths}, job 1's "
                                 f"{self.fsf} and {self.widths}")
            if sh.egs_left_context != self.left_context + self.fsf // 2:
                raise ValueError(f"{type(self).__name__}: the egs of job {sh.job + 1} were made for left context "
                                 f"{sh.egs_left_context - self.fsf // 2}, the model has {self.left_context}")
        self.rank, self.world = 0, 1
        self.shards = shards
        self.shard_of = np.concatenate([np.full(len(sh), k, np.int64) for k, sh in enumerate(shards)])
        self.local = np.concatenate([np.arange(len(sh), dtype=np.int64) for sh in shards])
        self.first_frame = torch.cat([sh.first_frame for sh in shards])
        self.width = torch.cat([sh.width for sh in shards]).numpy()
        self.num_out = torch.cat([sh.num_out for sh in shards]).numpy()
        has_iv = [sh.ivector_frame is not None for sh in shards]
        self.ivector_frame = torch.cat([sh.ivector_frame for sh in shards]).numpy() if all(has_iv) else None
        self.num_frames = sum(sh.num_frames for sh in shards)  # Kaldi's num_frames: sets num_archives
        self.skipped: dict[str, int] = {}
        for sh in shards:
            for why, n in sh.skipped.items():
                self.skipped[why] = self.skipped.get(why, 0) + n

    def set_share(self, rank: int, world: int) -> None:
        """Make only DDP rank ``rank``'s share of each minibatch: its every ``world``-th example (as
        ser.ddp.shard), the same tensors as the whole minibatch's slice."""
        self.rank, self.world = int(rank), int(world)

    def _utt(self, i: int) -> str:
        sh, j = self.shards[self.shard_of[i]], int(self.local[i])
        return sh.fs.feats.keys[int(sh.utt_idx[j])]

    def graph(self, i: int) -> ChainGraph:
        return self.shards[self.shard_of[i]].graphs[int(self.local[i])]

    @property
    def graphs(self) -> list[ChainGraph]:
        return [self.graph(i) for i in range(len(self.local))]

    def _inputs(self, batch: np.ndarray, first_frame: torch.Tensor, num_output_frames: int,
                epoch: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Inputs of examples ``batch`` with this epoch's frame shift, one i-vector per example, cut
        from each shard's features."""
        offset = input_offset(self.frame_shift(epoch), self.fsf)
        context = ModelContext(self.left_context, self.right_context, self.fsf)
        x, iv = None, None
        for k in np.unique(self.shard_of[batch]).tolist():
            pos = np.flatnonzero(self.shard_of[batch] == k)
            sh, tpos = self.shards[k], torch.from_numpy(pos)
            ivf = None if self.ivector_frame is None else torch.from_numpy(self.ivector_frame[batch[pos]])
            xk, ivk = model_inputs(sh.fs, sh.utt_idx[torch.from_numpy(self.local[batch[pos]])], context,
                                   first_frame[tpos] + offset, num_output_frames, ivector_mode="chunk",
                                   ivector_frame=ivf)
            if x is None:
                x = xk.new_empty((len(batch),) + xk.shape[1:])
                iv = None if ivk is None else ivk.new_empty((len(batch),) + ivk.shape[1:])
            x[tpos] = xk
            if iv is not None:
                iv[tpos] = ivk
        return x, iv

    def num_minibatches(self, epoch: int | None = None) -> int:
        return len(self._epoch_batches(self.epoch if epoch is None else epoch))

    def __len__(self) -> int:
        return self.num_minibatches()

    def frame_shift(self, epoch: int) -> int:
        return kaldi_frame_shift(epoch, self.fsf) if self.use_frame_shift else 0  # type: ignore[attr-defined]

    def set_epoch(self, epoch: int) -> None:
        self.epoch, self.position = int(epoch), 0

    def __iter__(self) -> Iterator[ChainMinibatch]:
        """The remaining minibatches of the current epoch; afterwards the next epoch begins.
        ``position`` is advanced before each minibatch is yielded, so a checkpoint taken after
        processing it resumes with the following one."""
        epoch = self.epoch
        batches = self._epoch_batches(epoch)
        while self.epoch == epoch and self.position < len(batches):
            start = self.position
            # minibatches made up to ``prefetch_depth`` ahead on a background thread (ser.io.prefetch: the features
            # read and decompressed off the training thread); ``position`` counts those handed out
            for mb in prefetch((self._make_minibatch(b, epoch) for b in batches[start:]), self.prefetch_depth):
                if self.epoch != epoch or self.position != start:
                    break  # moved by set_epoch / load_state_dict meanwhile: go on from there
                self.position = start = start + 1
                yield mb
        if self.epoch == epoch and self.position >= len(batches):
            self.epoch, self.position = epoch + 1, 0

    def state_dict(self) -> dict:
        return {"seed": self.seed, "epoch": self.epoch, "position": self.position, "kind": type(self).__name__}

    def load_state_dict(self, state: Mapping) -> None:
        if state.get("kind", type(self).__name__) != type(self).__name__:
            raise ValueError(f"{type(self).__name__}: state is for {state['kind']}")
        if int(state["seed"]) != self.seed:
            raise ValueError(f"{type(self).__name__}: state has seed {state['seed']}, these egs use {self.seed}")
        self.epoch, self.position = int(state["epoch"]), int(state["position"])


# ------------------------------------------------------------------------------------------
# pass 1: whole utterances
# ------------------------------------------------------------------------------------------
def make_e2e_examples(data: FeatureSet, graphs: Mapping[str, ChainGraph], num_output_frames: Mapping[str, int],
                      left_context: int, frame_subsampling_factor: int = 3, utts: Sequence[str] | None = None,
                      seed: int = 0, job: int = 0) -> EgsShard:
    """nnet3-chain-e2e-get-egs for ``utts`` (default: all of ``data``, sorted): one example per
    utterance with a numerator graph (the others are skipped, counted), its i-vector frame drawn from
    the stream of ``seed`` and ``job`` (job 0's: that of one process making every example)."""
    fsf = int(frame_subsampling_factor)
    cand = sorted(data.utts) if utts is None else list(utts)
    missing = [u for u in cand if u not in data.feats]
    if missing:
        raise ValueError(f"E2eEgs: no features for utterance {missing[0]!r} ({len(missing)} missing)")
    keep = [u for u in cand if graphs.get(u) is not None]
    skipped = {"no numerator graph": len(cand) - len(keep)} if len(keep) < len(cand) else {}
    if skipped:
        log.warning("E2eEgs: %d of %d utterances have no numerator graph; skipped", len(cand) - len(keep), len(cand))
    utt_idx = torch.tensor([data.feats.index[u] for u in keep], dtype=torch.int64)
    frames = data.feats.lengths[utt_idx]
    num_out = (frames + fsf - 1) // fsf
    for u, n, t in zip(keep, num_out.tolist(), frames.tolist()):
        if int(num_output_frames[u]) != n:
            raise ValueError(f"E2eEgs: utterance {u!r} has {t} frames (ceil(T/{fsf}) = {n} output frames) "
                             f"but its numerator graph was made for {num_output_frames[u]}")
    first = torch.zeros(len(keep), dtype=torch.int64)
    ivf = None
    if data.ivectors is not None:
        stream = [seed, 1 << 20] + ([job] if job else [])
        ivf = torch.from_numpy(_ivector_frames(np.random.default_rng(stream), first.numpy(), frames.numpy(),
                                               left_context + fsf // 2))
    return EgsShard("e2e", data, utt_idx, first, frames.clone(), num_out, ivf, [graphs[u] for u in keep],
                    int(frames.sum()), skipped, fsf, [], left_context + fsf // 2, seed, job)


class E2eEgs(_EpochIterator):
    """Whole-utterance minibatches for flat-start training (see the module docstring).

    ``graphs``/``num_output_frames``: ``ChainDir.num_graphs`` (utterances without a graph
    are skipped), or the shards of steps/chain/get_egs.sh (:meth:`from_shards`).
    ``left_context``/``right_context``: the model's (28/28 for tdnn_1g); the
    i-vector frame uses the egs context ``left_context + fsf // 2`` as Kaldi.  Each epoch the
    utterances are sorted by length (random tie order), grouped by the ``minibatch_size`` rule
    closest to their input size, each group cut into minibatches of that rule's size, and the
    minibatches shuffled.
    """

    def __init__(self, data: FeatureSet, graphs: Mapping[str, ChainGraph], num_output_frames: Mapping[str, int],
                 left_context: int, right_context: int, frame_subsampling_factor: int = 3,
                 minibatch_size: str | int = EgsConfig.e2e_minibatch_size,
                 utts: Sequence[str] | None = None, seed: int = 0, frame_shift: bool = True,
                 shuffle: bool = True) -> None:
        shard = make_e2e_examples(data, graphs, num_output_frames, left_context, frame_subsampling_factor, utts, seed)
        if not len(shard):
            raise ValueError("E2eEgs: no utterance has both features and a numerator graph")
        self._setup([shard], left_context, right_context, minibatch_size, seed, frame_shift, shuffle)

    @classmethod
    def from_shards(cls, shards: Sequence[EgsShard], left_context: int, right_context: int,
                    minibatch_size: str | int = EgsConfig.e2e_minibatch_size, seed: int = 0,
                    frame_shift: bool = True, shuffle: bool = True) -> "E2eEgs":
        """The utterances of ``shards`` (ser.train.egs_shards.EgsShard.load), in shard order."""
        egs = cls.__new__(cls)
        egs._setup(list(shards), left_context, right_context, minibatch_size, seed, frame_shift, shuffle)
        return egs

    def _setup(self, shards: list[EgsShard], left_context: int, right_context: int, minibatch_size: str | int,
               seed: int, frame_shift: bool, shuffle: bool) -> None:
        self.use_frame_shift, self.shuffle = bool(frame_shift), bool(shuffle)
        self.rules = parse_minibatch_size(minibatch_size)
        self._init_epochs(seed)
        self._setup_shards(shards, "e2e", left_context, right_context)
        self.eg_size = self.fsf * self.num_out + self.left_context + self.right_context

    @property
    def utts(self) -> list[str]:
        return [self._utt(i) for i in range(len(self.local))]

    @property
    def keys(self) -> list[str]:
        return self.utts

    def summary(self) -> str:
        """What one pass uses (for the training log)."""
        return (f"{len(self.local)} utterances, {self.num_frames} frames (whole utterances), "
                f"{len(self)} minibatches per pass")

    def _epoch_batches(self, epoch: int) -> list[np.ndarray]:
        rng = np.random.default_rng([self.seed, epoch])
        n = len(self.local)
        tie = rng.permutation(n) if self.shuffle else np.arange(n)
        order = np.lexsort((tie, self.num_out))
        batches, cur, cur_rule = [], [], -1
        for i in order.tolist():
            rule = closest_rule(self.rules, int(self.eg_size[i]))
            if cur and rule != cur_rule:  # a group's last, smaller minibatch
                batches.append(np.array(cur))
                cur = []
            cur_rule = rule
            cur.append(i)
            if len(cur) >= max(self.rules[rule][1]):
                batches.append(np.array(cur))
                cur = []
        if cur:
            batches.append(np.array(cur))
        if self.shuffle:
            batches = [batches[j] for j in rng.permutation(len(batches))]
        return batches

    def _make_minibatch(self, batch: np.ndarray, epoch: int) -> ChainMinibatch:
        t_out = int(self.num_out[batch].max())  # the whole minibatch's: a rank's share is padded alike
        batch = batch[self.rank::self.world]
        n_out = torch.from_numpy(self.num_out[batch].astype(np.int64))
        feats, ivec = self._inputs(batch, torch.zeros(len(batch), dtype=torch.int64), t_out, epoch)
        return ChainMinibatch(feats, ivec, NumeratorGraphBatch.from_graphs([self.graph(i) for i in batch.tolist()]),
                              n_out, [self._utt(i) for i in batch.tolist()])


# ------------------------------------------------------------------------------------------
# pass 2: chunks
# ------------------------------------------------------------------------------------------
def round_chunk_widths(spec: str | Sequence[int], frame_subsampling_factor: int = 3) -> list[int]:
    """ExampleGenerationConfig::ComputeDerived: "150,110,100" -> [150, 111, 102]."""
    vals = [int(x) for x in spec.split(",")] if isinstance(spec, str) else [int(x) for x in spec]
    if not vals or min(vals) <= 0:
        raise ValueError(f"--num-frames={spec}: expected positive integers")
    m = frame_subsampling_factor
    return [v if v % m == 0 else m * (v // m + 1) for v in vals]


@dataclass
class Chunk:
    utt: str
    first_frame: int  # input frame of the chunk's first output frame (a multiple of fsf)
    num_frames: int  # chunk width in input frames (a multiple of fsf)


class UtteranceSplitter:
    """Kaldi's UtteranceSplitter (src/nnet3/nnet-example-utils.cc) for --num-frames-overlap 0.

    Splits: zero to two "alternative" widths plus any number of the principal width; for an
    utterance of length u the candidates are the splits whose cost
    ``d - u if d > u else 2 (u - d)`` (d = sum of widths; infinite if the largest width
    exceeds u) is within 1.9999 of the best; one is chosen at random, its sorted widths
    reversed with probability 1/2, and the gaps (or overlaps, when d > u) distributed at
    random in units of the subsampling factor (GetGapSizes)."""

    def __init__(self, num_frames: Sequence[int], frame_subsampling_factor: int = 3) -> None:
        self.num_frames = list(num_frames)
        self.fsf = int(frame_subsampling_factor)
        if any(w % self.fsf for w in self.num_frames):
            raise ValueError("UtteranceSplitter: widths must be multiples of the frame-subsampling factor")
        primary = self.num_frames[0]
        self.max_len = 2 * max(self.num_frames) + primary
        ceiling = self.max_len + primary
        splits = set()
        n = len(self.num_frames)
        for i in range(n):
            for j in range(n):
                vec = ([self.num_frames[i]] if i > 0 else []) + ([self.num_frames[j]] if j > 0 else [])
                while sum(vec) <= ceiling:
                    if vec:
                        splits.add(tuple(sorted(vec)))
                    vec = sorted(vec + [primary])
        self.splits = sorted(splits)
        self.splits_for_length: list[list[tuple[int, ...]]] = []
        for u in range(self.max_len + 1):
            costs = []
            for s in self.splits:
                d = float(sum(s))
                c = d - u if d > u else 2.0 * (u - d)
                costs.append(math.inf if u < max(s) else c)
            best = min(costs)
            self.splits_for_length.append([] if best == math.inf else
                                          [s for s, c in zip(self.splits, costs) if c < best + 1.9999])

    def chunk_sizes(self, length: int, rng: random.Random) -> list[int]:
        primary, repeats = self.num_frames[0], 0
        while length > self.max_len:
            length -= primary
            repeats += 1
        pool = self.splits_for_length[length]
        if not pool:
            return []
        sizes = sorted(list(pool[rng.randrange(len(pool))]) + [primary] * repeats)
        if rng.randrange(2) == 0:
            sizes.reverse()
        return sizes

    @staticmethod
    def _distribute_uniform(n: int, size: int, rng: random.Random) -> list[int]:
        if n < 0:
            return [-x for x in UtteranceSplitter._distribute_uniform(-n, size, rng)]
        vec = [n // size + 1] * (n % size) + [n // size] * (size - n % size)
        rng.shuffle(vec)
        return vec

    @staticmethod
    def _distribute(n: int, magnitudes: list[int]) -> list[int]:
        if n < 0:
            return [-x for x in UtteranceSplitter._distribute(-n, magnitudes)]
        total = float(sum(magnitudes))
        counts = [n * m / total for m in magnitudes]
        vec = [int(c) for c in counts]
        order = sorted(range(len(magnitudes)), key=lambda i: -(counts[i] - vec[i]))
        for i in order[: n - sum(vec)]:
            vec[i] += 1
        return vec

    def gap_sizes(self, length: int, sizes: list[int], rng: random.Random) -> list[int]:
        if not sizes:
            return []
        f = self.fsf
        red_len = (length + f - 1) // f
        red = [s // f for s in sizes]
        total_gap = red_len - sum(red)
        if total_gap < 0:
            if len(red) == 1:
                raise ValueError(f"chunk width {sizes[0]} exceeds the utterance length {length}")
            overlaps = self._distribute(total_gap, [min(red[i], red[i + 1]) for i in range(len(red) - 1)])
            gaps = [0] + overlaps
        else:
            gaps = self._distribute_uniform(total_gap, len(red) + 1, rng)[: len(red)]
        return [g * f for g in gaps]

    def chunks(self, utt: str, length: int, rng: random.Random) -> list[Chunk]:
        sizes = self.chunk_sizes(length, rng)
        gaps = self.gap_sizes(length, sizes, rng)
        out, t = [], 0
        for g, s in zip(gaps, sizes):
            t += g
            out.append(Chunk(utt, t, s))
            t += s
        return out


def make_chunk_examples(data: FeatureSet, alignment, pdf_map, normalizer, left_context: int,
                        chunk_width: str | Sequence[int] = EgsConfig.chunk_width, frame_subsampling_factor: int = 3,
                        left_tolerance: int = TOLERANCE, right_tolerance: int = TOLERANCE,
                        optional_silence: int | None = None, utts: Sequence[str] | None = None, seed: int = 0,
                        job: int = 0) -> EgsShard:
    """nnet3-chain-get-egs for ``utts`` (default: all of ``data``): the chunks of each utterance
    (:class:`UtteranceSplitter`), each with its unconstrained numerator and one i-vector frame.  Job
    ``job`` (0-based) draws from its own streams, seeded with ``seed`` and ``job`` (Kaldi: --srand
    plus the job); job 0's are those of one process making every chunk.  Chunks whose supervision
    cannot be built are skipped and counted."""
    fsf = int(frame_subsampling_factor)
    widths = round_chunk_widths(chunk_width, fsf)
    cand = sorted(data.utts) if utts is None else list(utts)
    cand = [u for u in cand if u in alignment.phones]
    if not cand:
        raise ValueError("ChunkEgs: no utterance has both features and an alignment")
    num_frames = sum(data.num_frames(u) for u in cand)  # Kaldi's num_frames: sets num_archives
    splitter = UtteranceSplitter(widths, fsf)
    rng = random.Random(seed + 7919 * job)
    chunks: list[Chunk] = []
    graphs: list[ChainGraph] = []
    skipped: dict[str, int] = {}
    too_short = 0
    for u in progress(cand, desc="chunk supervision", disable=len(cand) < 200, leave=False):
        T = data.num_frames(u)
        n_out = (T + fsf - 1) // fsf
        seg = alignment.segments(u)
        if seg.num_frames != n_out:
            raise ValueError(f"ChunkEgs: alignment of {u!r} has {seg.num_frames} frames, the features give "
                             f"ceil({T}/{fsf}) = {n_out}")
        cs = splitter.chunks(u, T, rng)
        if not cs:
            too_short += 1
        for c in cs:
            r = make_chunk_supervision(seg.phones, seg.starts, seg.ends, c.first_frame // fsf,
                                       (c.first_frame + c.num_frames) // fsf, T, pdf_map, normalizer,
                                       fsf, left_tolerance, right_tolerance, optional_silence)
            if r.graph is None:
                skipped[r.reason] = skipped.get(r.reason, 0) + 1
                continue
            chunks.append(c)
            graphs.append(r.graph)
    if too_short:
        skipped[f"utterance shorter than {min(widths)} frames"] = too_short
    for reason, n in skipped.items():
        log.warning("ChunkEgs: %d skipped: %s", n, reason)
    utt_idx = torch.tensor([data.feats.index[c.utt] for c in chunks], dtype=torch.int64)
    first = torch.tensor([c.first_frame for c in chunks], dtype=torch.int64)
    ivf = None
    if data.ivectors is not None:
        stream = [seed, 1 << 20] + ([job] if job else [])
        frames = data.feats.lengths[utt_idx].numpy()
        ivf = torch.from_numpy(_ivector_frames(np.random.default_rng(stream), first.numpy(), frames,
                                               left_context + fsf // 2))
    width = torch.tensor([c.num_frames for c in chunks], dtype=torch.int64)
    return EgsShard("chunk", data, utt_idx, first, width, width // fsf, ivf, graphs, num_frames, skipped, fsf, widths,
                    left_context + fsf // 2, seed, job)


class ChunkEgs(_EpochIterator):
    """Chunk minibatches with unconstrained tolerance-based numerators (pass 2).

    ``alignment``: :class:`ser.train.align.Alignment` (phone segments per utterance at the
    output frame rate).  Chunks, their numerator graphs and i-vector rows are made once at
    construction from ``seed`` (:func:`make_chunk_examples`, as Kaldi writes its egs once), or
    read from the shards of steps/chain/get_egs.sh (:meth:`from_shards`); each epoch shuffles the
    chunks of each width, cuts minibatches of ``num_chunk_per_minibatch`` (a partial one per width
    is dropped), shuffles the minibatches, and applies the epoch's frame shift.
    Chunks whose supervision cannot be built (empty after normalisation) are skipped and
    counted in ``self.skipped``.
    """

    def __init__(self, data: FeatureSet, alignment, pdf_map, normalizer, left_context: int, right_context: int,
                 chunk_width: str | Sequence[int] = EgsConfig.chunk_width,
                 num_chunk_per_minibatch: int = EgsConfig.num_chunk_per_minibatch, frame_subsampling_factor: int = 3,
                 left_tolerance: int = TOLERANCE, right_tolerance: int = TOLERANCE,
                 optional_silence: int | None = None, utts: Sequence[str] | None = None, seed: int = 0,
                 frame_shift: bool = True, shuffle: bool = True, drop_partial: bool = True) -> None:
        shard = make_chunk_examples(data, alignment, pdf_map, normalizer, left_context, chunk_width,
                                    frame_subsampling_factor, left_tolerance, right_tolerance, optional_silence,
                                    utts, seed)
        self._setup([shard], left_context, right_context, num_chunk_per_minibatch, seed, frame_shift, shuffle,
                    drop_partial)

    @classmethod
    def from_shards(cls, shards: Sequence[EgsShard], left_context: int, right_context: int,
                    num_chunk_per_minibatch: int = EgsConfig.num_chunk_per_minibatch, seed: int = 0,
                    frame_shift: bool = True, shuffle: bool = True, drop_partial: bool = True) -> "ChunkEgs":
        """The chunks of ``shards`` (ser.train.egs_shards.EgsShard.load), in shard order."""
        egs = cls.__new__(cls)
        egs._setup(list(shards), left_context, right_context, num_chunk_per_minibatch, seed, frame_shift,
                   shuffle, drop_partial)
        return egs

    def _setup(self, shards: list[EgsShard], left_context: int, right_context: int, num_chunk_per_minibatch: int,
               seed: int, frame_shift: bool, shuffle: bool, drop_partial: bool) -> None:
        self.use_frame_shift, self.shuffle, self.drop_partial = bool(frame_shift), bool(shuffle), bool(drop_partial)
        self.minibatch_size = int(num_chunk_per_minibatch)
        if self.minibatch_size <= 0:
            raise ValueError("--num-chunk-per-minibatch must be positive")
        self._init_epochs(seed)
        self._setup_shards(shards, "chunk", left_context, right_context)

    def __len__(self) -> int:
        return self.num_minibatches()

    def _key(self, i: int) -> str:
        return f"{self._utt(i)}-{int(self.first_frame[i])}"

    @property
    def keys(self) -> list[str]:
        return [self._key(i) for i in range(len(self.local))]

    @property
    def chunks(self) -> list[Chunk]:
        return [Chunk(self._utt(i), int(f), int(w))
                for i, (f, w) in enumerate(zip(self.first_frame.tolist(), self.width.tolist()))]

    def summary(self) -> str:
        """What one pass uses (for the training log): the utterances with chunks, the frames their
        chunks cover (chunks of an utterance may overlap or leave gaps, as Kaldi's splitter does)
        and the skips."""
        used = sum(len(set(s.utt_idx.tolist())) for s in self.shards)
        skipped = "; ".join(f"{n} skipped: {why}" for why, n in self.skipped.items()) or "none skipped"
        return (f"{used} utterances ({self.num_frames} frames), {len(self.local)} chunks covering "
                f"{int(self.width.sum())} frames, {len(self)} minibatches per pass; {skipped}")

    def _epoch_batches(self, epoch: int) -> list[np.ndarray]:
        rng = np.random.default_rng([self.seed, epoch])
        batches = []
        for w in sorted(set(self.width.tolist())):
            idx = np.flatnonzero(self.width == w)
            if self.shuffle:
                idx = idx[rng.permutation(len(idx))]
            for s in range(0, len(idx), self.minibatch_size):
                b = idx[s:s + self.minibatch_size]
                if len(b) == self.minibatch_size or not self.drop_partial:
                    batches.append(b)
        if self.shuffle:
            batches = [batches[j] for j in rng.permutation(len(batches))]
        return batches

    def _make_minibatch(self, batch: np.ndarray, epoch: int) -> ChainMinibatch:
        batch = batch[self.rank::self.world]
        n_out = int(self.width[batch[0]]) // self.fsf
        feats, ivec = self._inputs(batch, self.first_frame[torch.from_numpy(batch)], n_out, epoch)
        return ChainMinibatch(feats, ivec, NumeratorGraphBatch.from_graphs([self.graph(i) for i in batch.tolist()]),
                              torch.full((len(batch),), n_out, dtype=torch.int64), [self._key(i) for i in batch.tolist()])
