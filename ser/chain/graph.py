"""The tensor form of chain (LF-MMI) graphs: acceptors over pdf ids.

Both the denominator graph and the numerator (supervision) graphs are weighted
acceptors whose arc labels are pdf ids.  Kaldi stores them as OpenFst FSTs with
labels pdf-id+1 and weights -log(p) (src/chain/chain-den-graph.h,
src/chain/chain-supervision.h); here an arc list in parallel tensors holds the
same information, 0-based pdf ids and log-probabilities:

    arc a:  src[a] --pdf[a] / exp(logp[a])--> dst[a]

``initial[s]`` and ``final[s]`` are log-weights of starting / ending in state s
(-inf = not allowed).  For the denominator graph ``initial`` holds the log of
Kaldi's initial probabilities (100 iterations of the HMM, DenominatorGraph::
SetInitialProbs) and ``final`` is 0 everywhere (every state final with prob 1).
For a numerator graph ``initial`` is 0 at its start state and -inf elsewhere and
``final`` holds the FST's final weights.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class ChainGraph:
    num_states: int
    src: torch.Tensor  # int64 [A]
    dst: torch.Tensor  # int64 [A]
    pdf: torch.Tensor  # int64 [A], 0-based pdf index
    logp: torch.Tensor  # float [A], log arc weight (= -OpenFst weight)
    initial: torch.Tensor  # float [S], log initial weight
    final: torch.Tensor  # float [S], log final weight

    def __post_init__(self) -> None:
        a = self.src.numel()
        if not (self.dst.numel() == self.pdf.numel() == self.logp.numel() == a):
            raise ValueError("ChainGraph: src/dst/pdf/logp must have the same length")
        if self.initial.numel() != self.num_states or self.final.numel() != self.num_states:
            raise ValueError("ChainGraph: initial/final must have num_states entries")
        if a and (int(self.src.max()) >= self.num_states or int(self.dst.max()) >= self.num_states):
            raise ValueError("ChainGraph: arc state index out of range")

    @property
    def num_arcs(self) -> int:
        return int(self.src.numel())

    @property
    def num_pdfs_used(self) -> int:
        return int(self.pdf.max()) + 1 if self.num_arcs else 0

    def to(self, device: torch.device | str) -> "ChainGraph":
        return ChainGraph(
            self.num_states,
            *(t.to(device) for t in (self.src, self.dst, self.pdf, self.logp, self.initial, self.final)),
        )

    def state_dict(self) -> dict[str, torch.Tensor | int]:
        """Plain tensors only, so ``torch.load(..., weights_only=True)`` reads it back."""
        return {
            "num_states": self.num_states,
            "src": self.src, "dst": self.dst, "pdf": self.pdf,
            "logp": self.logp, "initial": self.initial, "final": self.final,
        }

    @classmethod
    def from_state_dict(cls, d: dict) -> "ChainGraph":
        return cls(int(d["num_states"]), d["src"], d["dst"], d["pdf"], d["logp"], d["initial"], d["final"])
