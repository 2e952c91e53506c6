"""Greedy CTC decoding and character / word error rates.

Greedy (best-path) decoding: the most likely output of every frame, repeats merged, blanks removed
(Graves et al. 2006; DeepSpeech's evaluation uses a beam search with a language model instead, see
README).  Error rates are Kaldi ``compute-wer`` style (ser.eval.error_rate).  CER counts every character
of the normalised transcripts, spaces included (as DeepSpeech's
``evaluate_tools.calculate_and_print_report``); WER counts space-separated words.
"""

from __future__ import annotations

import numpy as np
import torch

from ser.eval.error_rate import ErrorCounts

__all__ = ["greedy_decode", "error_rate"]


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


def error_rate(refs: dict[str, str], hyps: dict[str, str], unit: str) -> ErrorCounts:
    """CER (``unit="CER"``: characters, spaces included) or WER (``"WER"``: words) of ``hyps`` against
    ``refs`` over the utterances of ``refs``; a missing hypothesis counts as empty (all deletions)."""
    if unit not in ("CER", "WER"):
        raise ValueError(f"unit must be CER or WER, got {unit!r}")
    split = list if unit == "CER" else str.split
    counts = ErrorCounts(unit)
    for utt, ref in refs.items():
        counts.add(split(ref), split(hyps.get(utt, "")))
    return counts
