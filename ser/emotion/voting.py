"""The utterance decision from frame outputs (paper 1, Sec. 3.4).

"corresponding to the highest valued dimension of the sum of the softmax layer output over
all frames within the utterance": the posterior of an utterance is the sum of its frames'
softmax vectors, normalised to sum to one (the mean), and its label is the argmax.  Ties go
to the class listed first in ``labels.txt`` (the lowest index), so the decision never depends
on anything but the posterior.  Sums are taken in float64.
"""

from __future__ import annotations

from typing import Sequence

import torch


def utterance_posterior(frame_logits: torch.Tensor) -> torch.Tensor:
    """[n, K] frame logits (or log-softmax outputs) -> [K] mean of the frame softmaxes."""
    if frame_logits.dim() != 2 or frame_logits.shape[0] == 0:
        raise ValueError(f"need frame logits [n >= 1, K], got {tuple(frame_logits.shape)}")
    if not bool(torch.isfinite(frame_logits).all()):
        raise ValueError("non-finite frame logits")
    p = torch.softmax(frame_logits.double(), dim=-1)
    return p.sum(0) / p.shape[0]


def decide(posterior: torch.Tensor) -> int:
    """Index of the largest entry; the first one on ties."""
    best = posterior.max()
    return int(torch.nonzero(posterior == best)[0, 0])


def vote(frame_logits: Sequence[torch.Tensor]) -> tuple[torch.Tensor, list[int]]:
    """Posteriors [U, K] (float64) and decisions of a list of utterances' frame logits."""
    post = torch.stack([utterance_posterior(f) for f in frame_logits])
    return post, [decide(p) for p in post]
