"""The chain (LF-MMI) training objective: numerator - denominator, plus Kaldi's regularisers.

Mirrors Kaldi's ``src/chain/chain-training.{h,cc}`` (ComputeChainObjfAndDerivE2e, used
for end-to-end supervision; ChainTrainingOptions) and the xent branch of
``src/nnet3/nnet-chain-training.cc``.  Per minibatch of B sequences x T frames:

* ``objf = sum_b log p_num(b) - log p_den(b)`` (supervision weight 1), reported per frame
  as ``objf / (B*T)`` -- Kaldi's "Overall log-probability for 'output'" line.  Its
  derivative w.r.t. the nnet output is ``num_post - den_post``.
* xent regularisation: ``xent_objf = sum_{b,t,n} num_post(b,t,n) * xent_output(b,t,n)``
  (xent_output is the log-softmax xent branch, the targets are the numerator posteriors,
  no gradient through them); the loss gets ``-xent_regularize * xent_objf``.
* ``--chain.l2-regularize``: Kaldi adds ``l2_term = -0.5 * l2 * sum(y^2)`` to the
  objective (derivative ``-l2 * y``); the loss gets ``+0.5 * l2 * sum(y^2)``.
* ``--chain.out-of-range-regularize`` r (PenalizeOutOfRange, limit 30): Kaldi adds the
  derivative ``-s * (y - 30)`` for y > 30 and ``-s * (y + 30)`` for y < -30 to the
  objective derivative, with ``s = 2r`` on a random half of the minibatches
  (``RandInt(0, 1) == 0``, whole minibatch) and nothing otherwise; it is a derivative only
  and never part of the reported objective.  Here it is the loss term
  ``0.5 * s * sum((y - clamp(y, -30, 30))^2)``, whose gradient is exactly that (negated,
  because the loss is minimised); ``out_of_range_stochastic=False`` applies it on every
  minibatch with ``s = r`` (same expectation, deterministic).
* Kaldi's failure rule: if the objective is not finite or the denominator check fails,
  the objective becomes -10 per frame and every derivative (chain, xent, l2, out-of-range)
  is zero.

Variable lengths: ``lengths`` (int64 [B], valid output frames per sequence; e.g.
``ChainMinibatch.num_output_frames`` of a batch of whole utterances) makes every term ignore
the padded frames ``t >= lengths[b]``: the den/num log-probs are those of the truncated
sequences, their derivatives (and the xent, l2 and out-of-range terms) are zero there, and
``num_frames`` counts only valid frames.

Normalisation: Kaldi sums over frames (its derivatives are sums; the learning rate is
scaled for that).  The returned loss is that sum, ``-objf - xent_regularize*xent_objf -
l2_term + out_of_range_term``; with ``normalize=True`` it is divided by the number of
frames (B*T, or sum(lengths)).  The stats always carry sums and per-frame values.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from ser.chain.denominator import DenominatorGraph, check_lengths, denominator_forward_backward, valid_frame_mask
from ser.chain.graph import ChainGraph
from ser.chain.numerator import NumeratorGraphBatch, numerator_forward_backward

__all__ = ["ChainObjfFunction", "ChainObjfInfo", "LFMMILoss"]

_DEFAULT_OBJF_PER_FRAME = -10.0  # chain-training.cc: default_objf when a minibatch is abandoned


class ChainObjfFunction(torch.autograd.Function):
    """(objf [B], num_post [B, T, P], aux [3]) from nnet_output [B, T, P].

    objf[b] = log p_num(b) - log p_den(b); its gradient w.r.t. the output is
    num_post - den_post (so for loss = -objf.sum() the gradient is -(num_post - den_post)).
    aux = (sum log p_num, sum log p_den, ok as 0/1); num_post and aux are not
    differentiable.  When ok is False (Kaldi abandons the minibatch) objf is -10 * T per
    sequence (-10 * lengths[b] with ``lengths``), num_post is zero and the gradient is zero.
    ``lengths`` (optional int64 [B]): valid frames per sequence, see the module docstring.
    """

    @staticmethod
    def forward(ctx, nnet_output: torch.Tensor, den: DenominatorGraph, num: NumeratorGraphBatch,  # type: ignore[override]
                leaky_hmm_coefficient: float, lengths: torch.Tensor | None = None):
        need = bool(ctx.needs_input_grad[0])
        B, T = nnet_output.shape[0], nnet_output.shape[1]
        lens = check_lengths(lengths, B, T, "chain objective")
        den_lp, den_post, den_ok = denominator_forward_backward(nnet_output, den, leaky_hmm_coefficient, need,
                                                                lengths=lens)
        num_lp, num_post, num_ok = numerator_forward_backward(nnet_output, num, compute_deriv=True, lengths=lens)
        objf = num_lp - den_lp
        ok = den_ok and num_ok and bool(torch.isfinite(objf).all())
        aux = torch.stack([num_lp.sum(), den_lp.sum(), objf.new_tensor(float(ok))]).detach()
        grad = None
        if not ok:
            frames = (torch.full_like(objf, float(T)) if lens is None
                      else lens.to(device=objf.device, dtype=objf.dtype))
            objf = _DEFAULT_OBJF_PER_FRAME * frames
            num_post = torch.zeros_like(nnet_output)
        elif need:
            grad = num_post - den_post
        num_post = num_post.detach()
        ctx.mark_non_differentiable(num_post, aux)
        ctx.save_for_backward(grad if grad is not None else nnet_output.new_empty(0))
        ctx.has_grad = grad is not None
        ctx.ok = ok
        ctx.shape, ctx.dtype, ctx.device = nnet_output.shape, nnet_output.dtype, nnet_output.device
        return objf, num_post, aux

    @staticmethod
    def backward(ctx, grad_objf: torch.Tensor, _g_post: torch.Tensor | None, _g_aux: torch.Tensor | None):  # type: ignore[override]
        if not ctx.ok:  # abandoned minibatch: zero derivative (as Kaldi)
            return torch.zeros(ctx.shape, dtype=ctx.dtype, device=ctx.device), None, None, None, None
        if not ctx.has_grad:
            return None, None, None, None, None
        (grad,) = ctx.saved_tensors
        return grad * grad_objf[:, None, None], None, None, None, None


@dataclass
class ChainObjfInfo:
    """Statistics of one minibatch (sums over its frames; ``*_per_frame`` divide by num_frames)."""

    num_frames: int
    objf: float  # sum of num - den (Kaldi's weighted objf), -10*num_frames if not ok
    num_logprob: float
    den_logprob: float
    xent_objf: float | None  # sum of num_post * xent_output, None without xent output
    l2_term: float  # -0.5 * l2 * sum(y^2) (0 when l2_regularize = 0)
    out_of_range_applied: bool
    ok: bool

    @property
    def objf_per_frame(self) -> float:
        return self.objf / self.num_frames

    @property
    def xent_per_frame(self) -> float | None:
        return None if self.xent_objf is None else self.xent_objf / self.num_frames

    def __str__(self) -> str:
        s = f"log-prob {self.objf_per_frame:.4f}"
        if self.l2_term:
            s += f" + l2 {self.l2_term / self.num_frames:.4f}"
        s += " per frame"
        if self.xent_objf is not None:
            s += f", xent {self.xent_per_frame:.4f}"
        s += f", over {self.num_frames} frames" + ("" if self.ok else " (minibatch abandoned)")
        return s


class LFMMILoss(torch.nn.Module):
    """Kaldi chain objective as a loss to minimise.

    ``forward(nnet_output [B, T, P], num_graphs, xent_output=None, lengths=None) -> (loss, ChainObjfInfo)``
    with ``num_graphs`` a NumeratorGraphBatch or a sequence of B ChainGraphs,
    ``xent_output`` the log-softmax output of the xent branch [B, T, P], and ``lengths``
    (int64 [B]) the valid output frames of each sequence (default: all T).
    """

    def __init__(
        self,
        den_graph: ChainGraph | DenominatorGraph,
        leaky_hmm_coefficient: float = 0.1,
        xent_regularize: float = 0.1,
        out_of_range_regularize: float = 0.01,
        l2_regularize: float = 0.0,
        out_of_range_stochastic: bool = True,
        normalize: bool = False,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        if not (0.0 <= leaky_hmm_coefficient < 1.0):
            raise ValueError(f"--leaky-hmm-coefficient must be in [0, 1), got {leaky_hmm_coefficient}")
        if out_of_range_regularize < 0 or l2_regularize < 0 or xent_regularize < 0:
            raise ValueError("LFMMILoss: regularisation constants must be >= 0")
        self.den = den_graph if isinstance(den_graph, DenominatorGraph) else DenominatorGraph(den_graph)
        self.leaky_hmm_coefficient = float(leaky_hmm_coefficient)
        self.xent_regularize = float(xent_regularize)
        self.out_of_range_regularize = float(out_of_range_regularize)
        self.l2_regularize = float(l2_regularize)
        self.out_of_range_stochastic = bool(out_of_range_stochastic)
        self.normalize = bool(normalize)
        self.generator = generator

    def forward(
        self,
        nnet_output: torch.Tensor,
        num_graphs: NumeratorGraphBatch | Sequence[ChainGraph],
        xent_output: torch.Tensor | None = None,
        lengths: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, ChainObjfInfo]:
        if nnet_output.dim() != 3:
            raise ValueError(f"LFMMILoss: nnet_output must be [B, T, P], got {tuple(nnet_output.shape)}")
        B, T, P = nnet_output.shape
        num = num_graphs if isinstance(num_graphs, NumeratorGraphBatch) else NumeratorGraphBatch.from_graphs(num_graphs)
        if num.num_sequences != B:
            raise ValueError(f"LFMMILoss: {num.num_sequences} numerator graphs for a minibatch of {B} sequences")
        if xent_output is not None and xent_output.shape != nnet_output.shape:
            raise ValueError(
                f"LFMMILoss: xent_output shape {tuple(xent_output.shape)} != nnet_output shape {tuple(nnet_output.shape)}"
            )
        lens = check_lengths(lengths, B, T, "LFMMILoss")
        frames = B * T if lens is None else int(lens.sum())
        mask = valid_frame_mask(lens, B, T, nnet_output.device)  # None: every frame valid
        objf, num_post, aux = ChainObjfFunction.apply(nnet_output, self.den, num, self.leaky_hmm_coefficient, lens)
        num_lp, den_lp, okf = aux.tolist()
        ok = okf > 0.5
        loss = -objf.sum()
        xent_objf = None
        l2_term = 0.0
        oor_applied = False
        if xent_output is not None:
            xent = (num_post * xent_output).sum()
            xent_objf = float(xent.detach())
            if ok and self.xent_regularize != 0.0:
                loss = loss - self.xent_regularize * xent
        if ok and self.l2_regularize != 0.0:
            sq = nnet_output * nnet_output
            if mask is not None:
                sq = sq * mask[:, :, None]
            l2 = -0.5 * self.l2_regularize * sq.sum()
            l2_term = float(l2.detach())
            loss = loss - l2
        if ok and self.out_of_range_regularize != 0.0 and torch.is_grad_enabled() and nnet_output.requires_grad:
            if self.out_of_range_stochastic:
                apply = bool(torch.randint(0, 2, (1,), generator=self.generator) == 0)
                scale = 2.0 * self.out_of_range_regularize
            else:
                apply, scale = True, self.out_of_range_regularize
            if apply:
                excess = nnet_output - nnet_output.clamp(-30.0, 30.0)
                if mask is not None:
                    excess = excess * mask[:, :, None]
                loss = loss + 0.5 * scale * (excess * excess).sum()
                oor_applied = True
        if self.normalize:
            loss = loss / frames
        info = ChainObjfInfo(
            num_frames=frames,
            objf=float(objf.detach().sum()),
            num_logprob=num_lp,
            den_logprob=den_lp,
            xent_objf=xent_objf,
            l2_term=l2_term,
            out_of_range_applied=oor_applied,
            ok=ok,
        )
        return loss, info
