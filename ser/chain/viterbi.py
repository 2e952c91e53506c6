"""Max-product (Viterbi) best paths through chain graphs, for alignment and decoding.

One core, :func:`viterbi_batch`: the log-domain max-product counterpart of
``ser.chain.numerator``'s forward over B sequences whose graphs are appended into one
(:class:`~ser.chain.numerator.NumeratorGraphBatch`), vectorised over the arcs per frame
(scatter-max, the winning arc kept as back-pointer); sequences may have different lengths.
Score of a path = initial + sum over frames of (arc log-weight + acoustic_scale * y(t, pdf))
+ final.  Ties go to the highest arc index and, at the end, the lowest state index.

* alignment (ser.train.align, Kaldi's ``nnet3-align-compiled``): each utterance through its
  own numerator graph;
* decoding (ser.chain.decode, :func:`viterbi`): every utterance through the same den graph,
  i.e. B copies of it appended.

Deviations from Kaldi: exact Viterbi over the whole graph (no beam, no lattice).
"""

from __future__ import annotations

import torch

from ser.chain.graph import ChainGraph
from ser.chain.numerator import NumeratorGraphBatch, check_batch

__all__ = ["viterbi_batch", "viterbi"]


def _forward(arc_ll: torch.Tensor, g: ChainGraph, src: torch.Tensor, dst: torch.Tensor
             ) -> tuple[torch.Tensor, torch.Tensor]:
    """alpha [T+1, S] (best log-score of reaching each state after t frames) and the winning
    arc into each state at each frame, bp [T, S] (-1: unreachable)."""
    T, S, A = arc_ll.shape[0], g.num_states, g.num_arcs
    dev, dtype = arc_ll.device, arc_ll.dtype
    neg = torch.tensor(float("-inf"), device=dev, dtype=dtype)
    arange_a = torch.arange(A, device=dev)
    alpha = arc_ll.new_empty(T + 1, S)
    bp = torch.empty(T, S, dtype=torch.int64, device=dev)
    alpha[0] = g.initial.to(device=dev, dtype=dtype)
    for t in range(T):
        score = alpha[t].index_select(0, src) + arc_ll[t]
        m = torch.full((S,), float("-inf"), device=dev, dtype=dtype).scatter_reduce(0, dst, score, "amax")
        win = (score == m.index_select(0, dst)) & (score > neg)
        cand = torch.where(win, arange_a, torch.full_like(arange_a, -1))
        bp[t] = torch.full((S,), -1, dtype=torch.int64, device=dev).scatter_reduce(0, dst, cand, "amax")
        alpha[t + 1] = m
    return alpha, bp


def viterbi_batch(nnet_output: torch.Tensor, num: NumeratorGraphBatch, lengths: torch.Tensor | None = None,
                  acoustic_scale: float = 1.0) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Best path through each sequence's graph.  nnet_output [B, T, P] (log-likelihoods, raw
    as in the numerator), lengths optional int64 [B].

    Returns (best log-score [B], -inf where no path exists; pdf sequence of each best path,
    int64 [L_b] on the CPU, empty if none)."""
    B, T, P, lens = check_batch(nnet_output, num, lengths, "viterbi")
    lens_full = torch.full((B,), T, dtype=torch.int64) if lens is None else lens
    y = nnet_output.detach()
    if acoustic_scale != 1.0:
        y = y * acoustic_scale
    g = num.graph
    dev, dtype = y.device, y.dtype
    S = g.num_states
    src, dst, pdf = g.src.to(dev), g.dst.to(dev), g.pdf.to(dev)
    seq_of_state = num.seq_of_state.to(dev)
    col = num.seq_of_arc.to(dev) * P + pdf
    arc_ll = y.transpose(0, 1).reshape(T, B * P).index_select(1, col) + g.logp.to(device=dev, dtype=dtype)[None, :]
    alpha, bp = _forward(arc_ll, g, src, dst)
    # the best final state of each sequence (lowest state index among equal scores)
    lens_d = lens_full.to(dev)
    end = alpha[lens_d.index_select(0, seq_of_state), torch.arange(S, device=dev)] + g.final.to(device=dev, dtype=dtype)
    best = torch.full((B,), float("-inf"), device=dev, dtype=dtype).scatter_reduce(0, seq_of_state, end, "amax")
    arange_s = torch.arange(S, device=dev)
    win = (end == best.index_select(0, seq_of_state)) & (end > float("-inf"))
    state = torch.full((B,), S, dtype=torch.int64, device=dev).scatter_reduce(
        0, seq_of_state, torch.where(win, arange_s, torch.full_like(arange_s, S)), "amin")
    ok = state < S
    # back-trace
    out = torch.full((B, T), -1, dtype=torch.int64, device=dev)
    for t in range(T - 1, -1, -1):
        active = ok & (t < lens_d)
        if not bool(active.any()):
            continue
        b_idx = active.nonzero().reshape(-1)
        arc = bp[t].index_select(0, state.index_select(0, b_idx))
        if bool((arc < 0).any()):  # cannot happen for a finite best score
            raise RuntimeError("viterbi: broken back-pointer chain")
        out[b_idx, t] = pdf.index_select(0, arc)
        state[b_idx] = src.index_select(0, arc)
    paths = [out[b, : int(lens_full[b])].cpu() if bool(ok[b]) else torch.zeros(0, dtype=torch.int64)
             for b in range(B)]
    return best, paths


@torch.no_grad()
def viterbi(nnet_output: torch.Tensor, graph: ChainGraph, lengths: torch.Tensor | None = None,
            acoustic_scale: float = 1.0) -> tuple[list[list[int]], torch.Tensor]:
    """Best path of each of the B sequences of nnet_output [B, T, P] through the one graph
    ``graph`` (float32; frames ``t >= lengths[b]`` ignored).  Returns (pdf sequences, best
    scores [B]); a sequence with no complete path gets [] and score -inf."""
    batch = NumeratorGraphBatch.from_graphs([graph] * nnet_output.shape[0])
    scores, paths = viterbi_batch(nnet_output.float(), batch, lengths, acoustic_scale)
    return [p.tolist() for p in paths], scores
