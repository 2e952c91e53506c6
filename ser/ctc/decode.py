"""Greedy CTC decoding and character / word error rates.

Greedy (best-path) decoding: the most likely output of every frame, repeats merged, blanks removed
(Graves et al. 2006; DeepSpeech's evaluation uses a beam search with a language model instead, see
README).  Error rates are Kaldi ``compute-wer`` style: the Levenshtein distance (substitutions,
insertions, deletions of one alignment of minimal cost) summed over utterances, divided by the number of
reference units.  CER counts every character of the normalised transcripts, spaces included (as
DeepSpeech's ``evaluate_tools.calculate_and_print_report``); WER counts space-separated words.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ser.chain.decode import align_counts

__all__ = ["greedy_decode", "EditCounts", "edit_counts", "ErrorRate", "error_rate"]


def greedy_decode(logits: torch.Tensor, lengths: torch.Tensor | None, blank: int) -> list[list[int]]:
    """Best path of each sequence of ``logits`` [B, T, C] (any monotone scores: logits, log-probs or
    posteriors) over its first ``lengths[b]`` frames: argmax per frame, repeats merged, blanks removed."""
    if logits.dim() != 3:
        raise ValueError(f"greedy_decode: logits must be [B, T, C], got {tuple(logits.shape)}")
    best = logits.argmax(dim=2).cpu().numpy()
    lens = [best.shape[1]] * best.shape[0] if lengths is None else [int(n) for n in lengths]
    out = []
    for b, n in enumerate(lens):
        path = best[b, :n]
        if n == 0:
            out.append([])
            continue
        keep = np.ones(n, dtype=bool)
        keep[1:] = path[1:] != path[:-1]
        out.append([int(c) for c in path[keep] if c != blank])
    return out


@dataclass
class EditCounts:
    """Kaldi compute-wer's counts for one or many utterances."""

    sub: int = 0
    ins: int = 0
    dels: int = 0
    ref: int = 0

    @property
    def errors(self) -> int:
        return self.sub + self.ins + self.dels

    def __add__(self, o: "EditCounts") -> "EditCounts":
        return EditCounts(self.sub + o.sub, self.ins + o.ins, self.dels + o.dels, self.ref + o.ref)


def edit_counts(ref: list, hyp: list) -> EditCounts:
    """Substitutions / insertions / deletions of one minimal (Levenshtein) alignment of ``hyp`` to ``ref``:
    the PER scorer's :func:`ser.chain.decode.align_counts` (ties towards substitutions, then deletions, as
    Kaldi's LevenshteinEditDistance does in effect)."""
    _, ins, dels, sub = align_counts(ref, hyp)
    return EditCounts(sub=sub, ins=ins, dels=dels, ref=len(ref))


@dataclass
class ErrorRate:
    unit: str  # "CER" or "WER"
    counts: EditCounts
    num_utts: int

    @property
    def rate(self) -> float:
        """Percent; 100 for an empty hypothesis set, infinite only with no reference units."""
        return 100.0 * self.counts.errors / self.counts.ref if self.counts.ref else float("inf")

    def __str__(self) -> str:  # Kaldi compute-wer's line
        c = self.counts
        return (f"%{self.unit} {self.rate:.2f} [ {c.errors} / {c.ref}, {c.ins} ins, {c.dels} del, {c.sub} sub ]"
                f" over {self.num_utts} utterances")


def error_rate(refs: dict[str, str], hyps: dict[str, str], unit: str) -> ErrorRate:
    """CER (``unit="CER"``: characters, spaces included) or WER (``"WER"``: words) of ``hyps`` against
    ``refs`` over the utterances of ``refs``; a missing hypothesis counts as empty (all deletions)."""
    if unit not in ("CER", "WER"):
        raise ValueError(f"unit must be CER or WER, got {unit!r}")
    split = list if unit == "CER" else str.split
    total = EditCounts()
    for utt, ref in refs.items():
        total = total + edit_counts(split(ref), split(hyps.get(utt, "")))
    return ErrorRate(unit, total, len(refs))
