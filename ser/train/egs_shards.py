"""Chain examples on disk: the shards ``egs.<job>.pt`` that steps/chain/get_egs.sh writes once.

Kaldi's ``steps/nnet3/chain/get_egs.sh`` runs ``nnet3-chain-get-egs`` as ``nj`` parallel jobs, each on
its split of the data, and every training job reads archives; no training process builds a numerator
or holds the corpus.  Here job ``j`` (``ser.bin.get_egs``) makes the examples of its utterances -- whole
utterances with their numerator graphs (``--egs-type e2e``, :func:`ser.train.egs.make_e2e_examples`) or
chunks with theirs (``chunk``, :func:`ser.train.egs.make_chunk_examples`), each with its i-vector frame --
and writes one shard: a ``torch.save`` file of plain tensors, read back memory-mapped (``torch.load(...,
mmap=True)``), so a trainer opens every shard at once at no cost and only the pages of the chunks it
takes are read.

One shard holds (all int64 unless said):

* ``utts`` (list of str), ``feats`` uint8 with ``feat_offsets`` [U + 1]: the features of the job's
  utterances that have chunks, whole (the epoch's frame shift and the model's context are applied when a
  minibatch is cut, as in memory), each as the bytes of one binary Kaldi matrix exactly as the feature ark
  stores it (``"\\0BCM "`` ... for ``copy-feats --compress`` features: Kaldi's compressed matrix, about a
  quarter of float32; ``"\\0BFM "`` for uncompressed ones; :func:`ser.io.batching.matrix_blob`): the bytes
  are copied, never re-encoded, so a shard's features are the ark's, decompressed per minibatch
  (:class:`ser.io.batching.LazyMatrixTable`); ``ivectors`` the same for the i-vectors, with
  ``ivector_offsets`` (or None) and ``ivector_period``;
* per example (a whole utterance or a chunk): ``utt_idx`` (into ``utts``), ``first_frame``, ``width``
  (input frames), ``num_out`` (output frames), ``ivector_frame`` (or None);
* the examples' numerator graphs packed (:func:`pack_graphs`): ``num_states``, ``state_offsets``,
  ``arc_offsets`` [C + 1]; ``src``/``dst`` (state indexes within the graph) and ``pdf`` [A], ``logp``,
  ``initial``, ``final`` float32;
* ``format``, ``kind`` (e2e, chunk), ``frame_subsampling_factor``, ``widths`` (chunk widths), ``egs_left_context`` (the context the i-vector
  frames were drawn with), ``seed``, ``job``, ``num_frames`` (the job's input frames, Kaldi's
  ``num_frames``) and ``skipped`` ({reason: count}).

Deviation from Kaldi: a shard stores whole utterances, not each chunk's window with its context (less
disk: chunks overlap, Kaldi's egs hold every frame about 1.4 times); Kaldi compresses each eg's window
again (``eg.Compress()``), here the utterance keeps the compression of its ark.  Version 1 shards (float32
``feats``) are still read.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch

from ser.chain.graph import ChainGraph
from ser.io.batching import FeatureSet, LazyMatrixTable, MatrixTable, matrix_blob
from ser.io.torch_io import TorchFileError, load_torch, save_torch

__all__ = ["FORMAT", "PackedGraphs", "pack_graphs", "EgsShard", "shard_paths"]

FORMAT = "ser.chain_egs.v2"
_FORMATS = ("ser.chain_egs.v1", FORMAT)  # v1: float32 feats and ivectors
_GRAPH_KEYS = ("num_states", "state_offsets", "arc_offsets", "src", "dst", "pdf", "logp", "initial", "final")


def pack_graphs(graphs: Sequence[ChainGraph]) -> dict[str, torch.Tensor]:
    """The graphs as flat tensors (see the module docstring); :class:`PackedGraphs` reads them."""
    def offsets(sizes: list[int]) -> torch.Tensor:
        o = torch.zeros(len(sizes) + 1, dtype=torch.int64)
        o[1:] = torch.cumsum(torch.tensor(sizes, dtype=torch.int64), 0)
        return o

    def cat(ts: list[torch.Tensor], dtype: torch.dtype) -> torch.Tensor:
        return torch.cat([t.to(dtype) for t in ts]) if ts else torch.zeros(0, dtype=dtype)

    gs = list(graphs)
    return {"num_states": torch.tensor([g.num_states for g in gs], dtype=torch.int64),
            "state_offsets": offsets([g.num_states for g in gs]), "arc_offsets": offsets([g.num_arcs for g in gs]),
            "src": cat([g.src for g in gs], torch.int64), "dst": cat([g.dst for g in gs], torch.int64),
            "pdf": cat([g.pdf for g in gs], torch.int64), "logp": cat([g.logp for g in gs], torch.float32),
            "initial": cat([g.initial for g in gs], torch.float32), "final": cat([g.final for g in gs], torch.float32)}


class PackedGraphs:
    """Graph ``i`` of :func:`pack_graphs`' tensors (copies of its slices: the file stays mapped)."""

    def __init__(self, packed: dict[str, torch.Tensor]) -> None:
        self.t = packed

    def __len__(self) -> int:
        return int(self.t["num_states"].numel())

    def __getitem__(self, i: int) -> ChainGraph:
        t = self.t
        a0, a1 = int(t["arc_offsets"][i]), int(t["arc_offsets"][i + 1])
        s0, s1 = int(t["state_offsets"][i]), int(t["state_offsets"][i + 1])
        return ChainGraph(s1 - s0, *(t[k][a0:a1].clone() for k in ("src", "dst", "pdf", "logp")),
                          t["initial"][s0:s1].clone(), t["final"][s0:s1].clone())

    def __iter__(self):
        return (self[i] for i in range(len(self)))


@dataclass
class EgsShard:
    """The examples of one job (or of one in-memory build): their utterances' features, the examples
    and their numerator graphs; what :class:`ser.train.egs.E2eEgs` and ``ChunkEgs`` iterate over."""

    kind: str  # "e2e" (whole utterances) or "chunk"
    fs: FeatureSet
    utt_idx: torch.Tensor  # [C] rows of fs
    first_frame: torch.Tensor  # [C]
    width: torch.Tensor  # [C] input frames
    num_out: torch.Tensor  # [C] output frames
    ivector_frame: torch.Tensor | None  # [C]
    graphs: Sequence[ChainGraph]  # a list, or PackedGraphs of a loaded shard
    num_frames: int  # the input frames of the utterances the chunks were cut from
    skipped: dict[str, int]
    frame_subsampling_factor: int
    widths: list[int]
    egs_left_context: int
    seed: int
    job: int

    def __len__(self) -> int:
        return int(self.utt_idx.numel())

    def save(self, path: str | os.PathLike) -> None:
        """One shard file (atomically) with the rows of the utterances that have chunks."""
        used = sorted(set(self.utt_idx.tolist()))
        keys = [self.fs.feats.keys[i] for i in used]
        remap = torch.full((len(self.fs.feats.keys),), -1, dtype=torch.int64)
        remap[torch.tensor(used, dtype=torch.int64)] = torch.arange(len(used))
        feats, feat_offsets = matrix_blob(self.fs.feats, keys)
        iv = self.fs.ivectors
        ivecs, ivec_offsets = (None, None) if iv is None else matrix_blob(iv, keys)
        save_torch({"format": FORMAT, "kind": self.kind, "utts": keys, "feats": feats, "feat_offsets": feat_offsets,
                    "ivectors": ivecs, "ivector_offsets": ivec_offsets,
                    "ivector_period": self.fs.ivector_period, "utt_idx": remap[self.utt_idx],
                    "first_frame": self.first_frame, "width": self.width, "num_out": self.num_out,
                    "ivector_frame": self.ivector_frame,
                    "graphs": pack_graphs(list(self.graphs)), "num_frames": self.num_frames,
                    "skipped": dict(self.skipped), "frame_subsampling_factor": self.frame_subsampling_factor,
                    "widths": list(self.widths), "egs_left_context": self.egs_left_context,
                    "seed": self.seed, "job": self.job}, path)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "EgsShard":
        """A shard, memory-mapped; its features are decoded per minibatch (:class:`LazyMatrixTable`)."""
        d = load_torch(path, what="chain egs shard", mmap=True,
                       expect_keys=("format", "kind", "utts", "feats", "feat_offsets", "graphs", "utt_idx", "num_out"))
        if d["format"] not in _FORMATS:
            raise TorchFileError(f"{path}: format {d['format']!r}, expected {FORMAT!r}")
        missing = [k for k in _GRAPH_KEYS if k not in d["graphs"]]
        if missing:
            raise TorchFileError(f"{path}: graphs have no key {missing[0]!r}")
        utts = list(d["utts"])

        def table(data, offsets, what):
            if d["format"] == "ser.chain_egs.v1":
                return MatrixTable(utts, data, offsets)
            return LazyMatrixTable.from_blob(utts, data, offsets, f"{path}: {what}")
        feats = table(d["feats"], d["feat_offsets"], "features")
        ivecs = None if d["ivectors"] is None else table(d["ivectors"], d["ivector_offsets"], "i-vectors")
        return cls(str(d["kind"]), FeatureSet(feats, ivecs, int(d["ivector_period"])), d["utt_idx"],
                   d["first_frame"], d["width"], d["num_out"], d["ivector_frame"], PackedGraphs(d["graphs"]), int(d["num_frames"]), dict(d["skipped"]),
                   int(d["frame_subsampling_factor"]), [int(w) for w in d["widths"]], int(d["egs_left_context"]),
                   int(d["seed"]), int(d["job"]))


def shard_paths(egs_dir: str | os.PathLike) -> list[Path]:
    """``<egs_dir>/egs.<j>.pt`` for j = 1..nj of ``<egs_dir>/info.json`` (written when every job succeeded)."""
    import json

    d = Path(egs_dir)
    info = d / "info.json"
    if not info.is_file():
        raise TorchFileError(f"{d}: no info.json (steps/chain/get_egs.sh did not finish)")
    nj = int(json.loads(info.read_text())["nj"])
    paths = [d / f"egs.{j}.pt" for j in range(1, nj + 1)]
    missing = [p for p in paths if not p.is_file()]
    if missing:
        raise TorchFileError(f"{missing[0]}: no such shard ({len(missing)} of {nj} missing)")
    return paths
