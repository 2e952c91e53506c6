"""Numerator (supervision) forward-backward of the chain (LF-MMI) objective, in PyTorch.

Mirrors Kaldi's ``src/chain/chain-generic-numerator.{h,cc}`` (GenericNumeratorComputation,
used for end-to-end / unconstrained supervision FSTs, which may have self-loops and several
final states): a log-domain forward-backward over each sequence's graph, **no leaky HMM**,
using the graph's initial and final weights, and the raw (unclamped) nnet output as
log-likelihoods:

    alpha(0, s) = initial(s)
    alpha(t+1, j) = logsumexp_{arcs i->j, p, n} alpha(t, i) + log p + y(t, n)
    log p_num = logsumexp_s alpha(T, s) + final(s)

and d log p_num / d y(t, n) = the numerator posterior of pdf n at frame t.

The B sequences of a minibatch are concatenated into one graph with offset state ids
(Kaldi appends the supervision FSTs of a minibatch the same way); each arc reads the
output row of its own sequence.  Everything per frame is vectorised over all arcs of all
sequences (gather + scatter-logsumexp); only the frame loop is in Python.

Variable lengths (``lengths``, int64 [B]): sequence b's log-prob is read at its own frame
``L_b`` (``logsumexp_s alpha(L_b, s) + final(s)``), its backward pass starts there and its
posteriors are zero on the padded frames ``>= L_b``.

Deviations from Kaldi: runs on whatever device the output is on (Kaldi: CPU threads);
no per-graph pdf remapping or offset trick (unneeded with a global max per state).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from ser.chain.denominator import check_lengths, valid_frame_mask
from ser.chain.graph import ChainGraph

__all__ = ["NumeratorGraphBatch", "numerator_forward_backward", "NumeratorFunction", "check_batch"]


@dataclass
class NumeratorGraphBatch:
    """B numerator graphs appended into one ChainGraph with offset states."""

    graph: ChainGraph
    seq_of_state: torch.Tensor  # int64 [S]
    seq_of_arc: torch.Tensor  # int64 [A]
    num_sequences: int

    @classmethod
    def from_graphs(cls, graphs: Sequence[ChainGraph]) -> "NumeratorGraphBatch":
        if len(graphs) == 0:
            raise ValueError("NumeratorGraphBatch: no graphs")
        offs, srcs, dsts, pdfs, logps, inits, finals, sos, soa = 0, [], [], [], [], [], [], [], []
        for b, g in enumerate(graphs):
            srcs.append(g.src.long() + offs)
            dsts.append(g.dst.long() + offs)
            pdfs.append(g.pdf.long())
            logps.append(g.logp)
            inits.append(g.initial)
            finals.append(g.final)
            sos.append(torch.full((g.num_states,), b, dtype=torch.long, device=g.src.device))
            soa.append(torch.full((g.num_arcs,), b, dtype=torch.long, device=g.src.device))
            offs += g.num_states
        dtype = torch.promote_types(logps[0].dtype, inits[0].dtype)
        graph = ChainGraph(
            offs, torch.cat(srcs), torch.cat(dsts), torch.cat(pdfs),
            torch.cat([lp.to(dtype) for lp in logps]), torch.cat([i.to(dtype) for i in inits]),
            torch.cat([f.to(dtype) for f in finals]),
        )
        return cls(graph, torch.cat(sos), torch.cat(soa), len(graphs))

    def to(self, device: torch.device | str) -> "NumeratorGraphBatch":
        return NumeratorGraphBatch(
            self.graph.to(device), self.seq_of_state.to(device), self.seq_of_arc.to(device), self.num_sequences
        )


def _scatter_logsumexp(v: torch.Tensor, index: torch.Tensor, n: int) -> torch.Tensor:
    """out[i] = log sum_{a: index[a] = i} exp(v[a]) (-inf for empty sets), along dim 0."""
    m = v.new_full((n,) + v.shape[1:], float("-inf"))
    m = m.scatter_reduce(0, index, v, reduce="amax", include_self=True)
    m = torch.where(torch.isfinite(m), m, torch.zeros_like(m))
    s = v.new_zeros((n,) + v.shape[1:]).index_add_(0, index, (v - m[index]).exp())
    return s.log() + m


def check_batch(nnet_output: torch.Tensor, num: NumeratorGraphBatch, lengths: torch.Tensor | None,
                what: str) -> tuple[int, int, int, torch.Tensor | None]:
    """(B, T, P, lengths as check_lengths gives them) of nnet_output [B, T, P] for the B graphs
    of ``num``; a one-line ValueError prefixed ``what`` when they do not fit."""
    if nnet_output.dim() != 3:
        raise ValueError(f"{what}: nnet_output must be [B, T, P], got shape {tuple(nnet_output.shape)}")
    B, T, P = nnet_output.shape
    if num.num_sequences != B:
        raise ValueError(f"{what}: {num.num_sequences} numerator graphs for {B} sequences of nnet output")
    g = num.graph
    if g.num_arcs and int(g.pdf.max()) >= P:
        raise ValueError(f"{what}: graph uses pdf {int(g.pdf.max())} but nnet output has {P} columns")
    return B, T, P, check_lengths(lengths, B, T, what)


def numerator_forward_backward(
    nnet_output: torch.Tensor, num: NumeratorGraphBatch, compute_deriv: bool = True,
    lengths: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None, bool]:
    """Log-domain forward-backward.  nnet_output [B, T, P]; lengths optional int64 [B]
    (valid frames per sequence).

    Returns (logprob [B], posteriors [B, T, P] = d logprob / d nnet_output (None unless
    compute_deriv), ok) with ok False when some sequence has no path (log p = -inf) or a
    value is not finite.
    """
    B, T, P, lens = check_batch(nnet_output, num, lengths, "numerator")
    y = nnet_output.detach()
    g = num.graph
    dev, dtype = y.device, y.dtype
    src, dst = g.src.to(dev), g.dst.to(dev)
    col = num.seq_of_arc.to(dev) * P + g.pdf.to(dev)  # column of each arc in a frame's [B*P] row
    logp = g.logp.to(device=dev, dtype=dtype)
    S = g.num_states
    seq_of_state = num.seq_of_state.to(dev)
    yt = y.transpose(0, 1).reshape(T, B * P)
    arc_ll = yt.index_select(1, col) + logp[None, :]  # [T, A]
    alpha = y.new_empty(T + 1, S)
    alpha[0] = g.initial.to(device=dev, dtype=dtype)
    for t in range(T):
        alpha[t + 1] = _scatter_logsumexp(alpha[t].index_select(0, src) + arc_ll[t], dst, S)
    final = g.final.to(device=dev, dtype=dtype)
    if lens is None:
        alpha_end = alpha[T]
    else:
        len_of_state = lens.to(dev).index_select(0, seq_of_state)
        alpha_end = alpha[len_of_state, torch.arange(S, device=dev)]  # alpha(L_b, s) for s in b
    logprob = _scatter_logsumexp(alpha_end + final, seq_of_state, B)
    ok = bool(torch.isfinite(logprob).all())
    if not compute_deriv:
        return logprob, None, ok
    post = y.new_zeros(T, B * P)
    if lens is None:
        beta = final
    else:  # each sequence's backward pass starts at its own last frame
        beta = torch.where(len_of_state == T, final, torch.full_like(final, float("-inf")))
    lp_arc = logprob.index_select(0, num.seq_of_arc.to(dev))
    for t in range(T - 1, -1, -1):
        if lens is not None and t + 1 < T:
            beta = torch.where(len_of_state == t + 1, final, beta)
        v = arc_ll[t] + beta.index_select(0, dst)  # [A]
        arc_post = (alpha[t].index_select(0, src) + v - lp_arc).exp()
        post[t].index_add_(0, col, arc_post)
        beta = _scatter_logsumexp(v, src, S)
    post = post.view(T, B, P).transpose(0, 1)
    mask = valid_frame_mask(lens, B, T, dev)
    if mask is not None:
        post = post.masked_fill(~mask[:, :, None], 0.0)
    if not bool(torch.isfinite(post).all()):
        ok = False
    return logprob, post, ok


class NumeratorFunction(torch.autograd.Function):
    """logprob[b] = numerator log-likelihood of sequence b; grad = numerator posteriors."""

    @staticmethod
    def forward(ctx, nnet_output: torch.Tensor, num: NumeratorGraphBatch,  # type: ignore[override]
                lengths: torch.Tensor | None = None):
        logprob, post, _ = numerator_forward_backward(nnet_output, num, compute_deriv=ctx.needs_input_grad[0],
                                                      lengths=lengths)
        ctx.save_for_backward(post if post is not None else nnet_output.new_empty(0))
        return logprob

    @staticmethod
    def backward(ctx, grad_logprob: torch.Tensor):  # type: ignore[override]
        (post,) = ctx.saved_tensors
        return post * grad_logprob[:, None, None], None, None
