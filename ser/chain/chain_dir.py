"""The chain directory of stage 5 (``exp/chain``, written by ser.chain.prepare_e2e): one loader
for its tensor files, each read once, on first use, through ser.io.torch_io.

* ``den.pt``: the den graph -- :attr:`ChainDir.den_graph` (training form, Kaldi's
  DenominatorGraph: initial probs, every state final), :attr:`ChainDir.decoding_graph`
  (FST form: start state only, the FST's final weights), :attr:`ChainDir.den_fst`
  (:class:`~ser.chain.den_graph.DenGraph`, for the numerator normalisation), ``num_pdfs``;
* ``num.pt``: :attr:`ChainDir.num_graphs`, the whole-utterance numerator graphs;
* ``pdf_map.pt``: :attr:`ChainDir.pdf_map`.

Kaldi keeps the same files as ``den.fst``, ``normalization.fst``, the egs' supervision and the
tree; each of its programs reads them itself.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import torch

from ser.chain.den_graph import DenGraph
from ser.chain.graph import ChainGraph
from ser.chain.topo import PdfMap
from ser.io.torch_io import TorchFileError, load_torch

__all__ = ["ChainDir", "NumGraphs"]

_GRAPH_KEYS = ("num_states", "src", "dst", "pdf", "logp", "initial", "final")


@dataclass
class NumGraphs:
    """num.pt: one normalised numerator graph per utterance and its number of output frames."""

    graphs: dict[str, ChainGraph]
    num_output_frames: dict[str, int]
    frame_subsampling_factor: int


class ChainDir:
    """``ChainDir.load("exp/chain")``; the files are read lazily (see the module docstring)."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "ChainDir":
        p = Path(path)
        if not p.is_dir():
            raise TorchFileError(f"{p}: no such chain dir (run steps/chain/prepare_e2e.sh)")
        return cls(p)

    # -- den.pt ------------------------------------------------------------------------------
    @cached_property
    def _den(self) -> dict:
        return load_torch(self.path / "den.pt", what="den graph", expect_keys=_GRAPH_KEYS + ("num_pdfs",))

    @cached_property
    def den_graph(self) -> ChainGraph:
        """The den graph as LF-MMI's denominator uses it (ser.chain.denominator)."""
        return ChainGraph.from_state_dict(self._den)

    @property
    def num_pdfs(self) -> int:
        return int(self._den["num_pdfs"])

    @cached_property
    def decoding_graph(self) -> ChainGraph:
        """The den graph as a decoding FST: its start state only, the FST's final weights."""
        d, g = self._den, self.den_graph
        if "fst_start" not in d:
            return g
        init = torch.full((g.num_states,), float("-inf"))
        init[int(d["fst_start"])] = 0.0
        return ChainGraph(g.num_states, g.src, g.dst, g.pdf, g.logp, init, d["fst_final"].float())

    @cached_property
    def den_fst(self) -> DenGraph:
        """The den FST with its initial probs (for ser.chain.supervision.Normalizer)."""
        d = self._den
        missing = [k for k in ("fst_start", "fst_final", "init_probs") if k not in d]
        if missing:
            raise TorchFileError(f"{self.path / 'den.pt'}: not a den graph: no key {missing[0]!r}")
        return DenGraph.from_state_dict(d)

    # -- num.pt, pdf_map.pt ---------------------------------------------------------------------
    @cached_property
    def num_graphs(self) -> NumGraphs:
        d = load_torch(self.path / "num.pt", what="numerator graphs",
                       expect_keys=("graphs", "num_output_frames", "frame_subsampling_factor"))
        graphs = {u: ChainGraph.from_state_dict(g) for u, g in d["graphs"].items()}
        return NumGraphs(graphs, {u: int(n) for u, n in d["num_output_frames"].items()},
                         int(d["frame_subsampling_factor"]))

    @cached_property
    def pdf_map(self) -> PdfMap:
        d = load_torch(self.path / "pdf_map.pt", what="pdf map", expect_keys=("kind", "table", "num_pdfs"))
        return PdfMap.from_state_dict(d)
