"""Denominator forward-backward of the chain (LF-MMI) objective, in PyTorch.

Mirrors Kaldi's ``src/chain/chain-denominator.{h,cc}`` (class DenominatorComputation)
and the den-graph conventions of ``src/chain/chain-den-graph.{h,cc}``:

* probability domain, not log: ``x(t, n) = exp(clamp(y(t, n), -30, 30))``
  (Kaldi ``ApplyExpLimited(-30, 30)``);
* ``alpha(0, i) = init(i)``; for every frame ``tot_alpha(t) = sum_i alpha(t, i)`` and the
  leaky-HMM "alpha-dash" ``alpha'(t, i) = alpha(t, i) + c * init(i) * tot_alpha(t)``;
* ``alpha(t, j) = sum_{arcs i->j, p, n} alpha'(t-1, i) p x(t-1, n) / tot_alpha(t-1)``
  (the per-frame "arbitrary scale" 1/tot_alpha keeps values in range);
* ``log p = log sum_i alpha'(T, i) + sum_{t<T} log tot_alpha(t)`` -- every state is final
  with probability one;
* backward: ``beta'(T, i) = 1 / sum_i alpha'(T, i)``,
  ``beta(t, i) = beta'(t, i) + c * sum_k init(k) beta'(t, k)``,
  ``beta'(t, i) = sum_{arcs i->j, p, n} p x(t, n) beta(t+1, j) / tot_alpha(t)`` and the
  occupation (= d log p / d y(t, n)) ``gamma(t, n) = sum_{arcs with pdf n}
  alpha'(t, i) p x(t, n) beta(t+1, j) / tot_alpha(t)``;
* the t = 0 sanity check of ``BetaGeneralFrameDebug``: sum alpha'(0) beta'(0) and
  sum gamma(0) must both equal the number of sequences; an error > 2 "abandons the
  minibatch" (reported through ``ok=False``).

Like Kaldi, the derivative is the occupation ``gamma`` even where the output was clamped
(it is not masked by the clamp); the out-of-range penalty (objective.py) pulls such
outputs back.

Vectorisation (not in Kaldi, same arithmetic up to float summation order): arcs are
grouped by (destination state, pdf) -- or by (source state, pdf) when that gives fewer
groups -- so that each frame is one sparse CSR x dense matmul with the fixed
transition matrix (shared by all sequences) plus gathers / 0-1 sparse matmuls over the
groups -- or, in the slot layout a chain den graph gets (two groups per state), plain sums
and broadcasts.  Only the loop over frames is in Python.  Memory: alpha is (T+1) x S x B (3 x S x B
when the forward's group products, T x K x B, are kept for the backward); beta keeps one frame.

Variable lengths (``lengths``, int64 [B], the number of valid frames of each sequence,
as in a minibatch of whole utterances of different durations): the frames are run for the
whole padded tensor, but sequence b's log-prob is read at its own frame ``L_b``
(``log sum_i alpha'(L_b, i) + sum_{t<L_b} log tot_alpha(t)``), its backward pass starts at
``L_b`` and its derivative is zero on frames ``>= L_b`` -- exactly the values of the truncated
sequence run alone.  Kaldi has no such option (its chain minibatches have equal lengths).

Deviations: the leaky coefficient may be 0 (Kaldi requires 0 < c < 1; 0 gives the exact
non-leaky HMM, used in tests); no randomized pruning of small derivatives (Kaldi's CUDA
kernels threshold occupations below 2^-14 at random, its CPU code does not); the
derivative is not accumulated in chunks of kMaxDerivTimeSteps frames (memory detail).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field

import torch

from ser.chain.graph import ChainGraph

__all__ = [
    "DenominatorGraph", "denominator_forward_backward", "DenominatorFunction", "check_lengths", "valid_frame_mask",
]


# The per-frame products below are CSR x dense; torch warns once that CSR support is "beta".  Filtered here,
# once, rather than by a catch_warnings() around each product (which cost ~10% of the whole computation).
warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")


def _csr(rows: torch.Tensor, cols: torch.Tensor, vals: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    """A coalesced (duplicates summed) CSR matrix from COO triplets, with int32 indices (int64 ones are
    converted on every CPU product: ~25% slower, measured)."""
    coo = torch.sparse_coo_tensor(torch.stack([rows, cols]), vals, shape, check_invariants=False).coalesce()
    csr = coo.to_sparse_csr()
    return torch.sparse_csr_tensor(csr.crow_indices().int(), csr.col_indices().int(), csr.values(), shape,
                                   check_invariants=False)


@dataclass
class _DenTensors:
    """The den graph laid out for one (device, dtype, num_pdfs).

    Arcs are grouped into K groups keyed by (state, pdf) where "state" is the
    destination (mode "dst") or the source (mode "src") of the arc; "other" is the
    arc's other end.  For a [S, B] matrix v, ``gather_mat @ v`` gives, per group k,
    sum over its arcs of p * v[other]; ``scatter_mat @ w`` (its transpose) sums group
    values w[k] * p into the "other" states.

    Slot layout (``slots`` = m > 0): when every state has at most m groups and m S is
    not much more than K, group k is stored at row ``slot * S + state`` (slot = its rank
    among its state's groups; empty rows have no arcs and no pdf), so that a [K, B]
    tensor viewed as [m, S, B] has its per-state sum as a sum over the first dimension
    and ``v[state]`` as a broadcast -- no gather, no 0/1 product.  A chain den graph has
    two groups per destination state (self-loop and entry pdfs): m = 2, K = 2 S.
    """

    mode: str
    init: torch.Tensor  # [S] initial probabilities
    group_state: torch.Tensor  # [K]
    group_pdf: torch.Tensor  # [K]
    gather_mat: torch.Tensor  # CSR [K, S]: (k, other) -> p
    scatter_mat: torch.Tensor  # CSR [S, K]: (other, k) -> p
    state_scatter: torch.Tensor  # CSR [S, K] 0/1: group k -> group_state[k]
    pdf_scatter: torch.Tensor  # CSR [P, K] 0/1: group k -> group_pdf[k]
    singleton: bool  # every group is one arc: gather_mat @ v is a row gather and a scale
    group_other: torch.Tensor  # [K] (only when singleton)
    group_prob: torch.Tensor  # [K, 1] (only when singleton)
    slots: int  # m of the slot layout (K = m S), 0 when not used
    init_sum: float  # sum of the initial probabilities
    workspace: dict[str, torch.Tensor] = field(default_factory=dict)  # CPU buffers reused across calls (_scratch)


_PER_ARC_FRACTION = 0.7  # more (state, pdf) groups than this fraction of the arcs: one group per arc
_SLOT_PADDING = 1.25  # the slot layout when its m S rows are at most this many times the K groups


def _slot_rows(group_state: torch.Tensor, S: int) -> tuple[torch.Tensor, int]:
    """(row of each group in the slot layout, m) for groups sorted by state: row = slot * S + state, slot
    = the group's rank among its state's groups, m = the most groups of any state."""
    first = torch.searchsorted(group_state, group_state)  # index of the state's first group
    slot = torch.arange(group_state.numel()) - first
    return slot * S + group_state, int(slot.max()) + 1


class DenominatorGraph:
    """A ChainGraph used as Kaldi's DenominatorGraph: init probs from ``graph.initial``
    (exp), arc probs exp(logp), every state final with probability 1 (``graph.final``
    is ignored, as in Kaldi)."""

    def __init__(self, graph: ChainGraph, mode: str | None = None) -> None:
        """``mode`` ("dst" / "src") forces the arc grouping; default: the one with fewer groups."""
        if graph.num_arcs == 0:
            raise ValueError("DenominatorGraph: the den graph has no arcs")
        self.graph = graph
        self.num_states = graph.num_states
        self.num_pdfs_used = graph.num_pdfs_used
        src, dst, pdf = (t.detach().cpu().long() for t in (graph.src, graph.dst, graph.pdf))
        big = self.num_pdfs_used + 1
        n_dst = torch.unique(dst * big + pdf).numel()
        n_src = torch.unique(src * big + pdf).numel()
        if mode not in (None, "dst", "src"):
            raise ValueError(f"DenominatorGraph: mode must be 'dst' or 'src', got {mode!r}")
        self.mode = mode or ("dst" if n_dst <= n_src else "src")
        n = n_dst if self.mode == "dst" else n_src
        self.num_groups = graph.num_arcs if n > _PER_ARC_FRACTION * graph.num_arcs else n
        self._cache: dict[tuple, _DenTensors] = {}

    def tensors(self, device: torch.device, dtype: torch.dtype, num_pdfs: int) -> _DenTensors:
        key = (str(device), dtype, num_pdfs)
        if key in self._cache:
            return self._cache[key]
        if num_pdfs < self.num_pdfs_used:
            raise ValueError(
                f"DenominatorGraph: nnet output has {num_pdfs} columns but the den graph uses "
                f"pdf ids up to {self.num_pdfs_used - 1}"
            )
        g = self.graph
        S, A = self.num_states, g.num_arcs
        src, dst, pdf = (t.detach().cpu().long() for t in (g.src, g.dst, g.pdf))
        prob = g.logp.detach().cpu().double().exp()
        state = dst if self.mode == "dst" else src
        other = src if self.mode == "dst" else dst
        key_arc = state * (num_pdfs + 1) + pdf
        uniq, group_of_arc = torch.unique(key_arc, sorted=True, return_inverse=True)
        if uniq.numel() > _PER_ARC_FRACTION * A:
            # hardly any sharing: one group per arc (sorted by key), so that the per-group
            # sums become row gathers (a CSR product with ~1 entry per row is much slower)
            order = torch.argsort(key_arc, stable=True)
            uniq = key_arc[order]
            group_of_arc = torch.empty(A, dtype=torch.long).index_copy_(0, order, torch.arange(A))
        singleton = uniq.numel() == A
        group_state, group_pdf = uniq // (num_pdfs + 1), uniq % (num_pdfs + 1)
        rows, m = _slot_rows(group_state, S)
        slots = m if m * S <= _SLOT_PADDING * uniq.numel() else 0
        if not slots:
            rows = torch.arange(uniq.numel())
        K = m * S if slots else uniq.numel()
        group_of_arc = rows[group_of_arc]
        group_state = torch.arange(K) % S if slots else group_state
        group_pdf = torch.zeros(K, dtype=torch.long).index_copy_(0, rows, group_pdf)  # empty rows: pdf 0
        ones = torch.ones(rows.numel(), dtype=torch.float64)
        group_other = torch.zeros(0, dtype=torch.long)
        group_prob = torch.zeros(0, 1, dtype=torch.float64)
        if singleton:  # empty rows: probability 0
            group_other = torch.zeros(K, dtype=torch.long).index_copy_(0, group_of_arc, other)
            group_prob = torch.zeros(K, dtype=torch.float64).index_copy_(0, group_of_arc, prob)[:, None]

        def dev(m: torch.Tensor) -> torch.Tensor:
            return m.to(device=device, dtype=dtype)

        init = dev(g.initial.detach().cpu().double().exp())
        t = _DenTensors(
            mode=self.mode,
            init=init,
            group_state=group_state.to(device),
            group_pdf=group_pdf.to(device),
            gather_mat=dev(_csr(group_of_arc, other, prob, (K, S))),
            scatter_mat=dev(_csr(other, group_of_arc, prob, (S, K))),
            state_scatter=dev(_csr(group_state[rows], rows, ones, (S, K))),
            pdf_scatter=dev(_csr(group_pdf[rows], rows, ones, (num_pdfs, K))),  # the empty rows left out
            singleton=singleton,
            group_other=group_other.to(device),
            group_prob=dev(group_prob),
            slots=slots,
            init_sum=float(init.double().sum()),  # once here: on CUDA, reading it back is a sync
        )
        self._cache[key] = t
        return t


def _check_leaky(leaky_hmm_coefficient: float) -> None:
    if not (0.0 <= leaky_hmm_coefficient < 1.0):
        raise ValueError(f"leaky_hmm_coefficient must be in [0, 1), got {leaky_hmm_coefficient}")


def _mm(m: torch.Tensor, v: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """out = m @ v for a CSR m.  On the CPU directly into the preallocated ``out`` (fresh allocations
    cost page faults on every frame); on CUDA the caching allocator makes the temporary cheap."""
    if v.device.type == "cpu":
        # in place with beta = 0 (out is ignored, NaN included): torch.mm(out=) zero-fills a temporary,
        # adds the product into it and copies it to out, twice the time of the product alone (measured)
        return out.addmm_(m, v, beta=0)
    out.copy_(m @ v)
    return out


def _scratch(dt: _DenTensors, name: str, shape: tuple[int, ...], like: torch.Tensor) -> torch.Tensor:
    """An uninitialised ``shape`` tensor, on the CPU one buffer per ``name`` kept in ``dt`` and reused by the
    next call.  A fresh allocation over glibc's mmap threshold (at most 32 MiB) is handed back to the OS when freed and
    costs a page fault per 4 KiB on its next first touch: ~40 ms of a ~150 ms call at 64 x 50 frames on the
    mini den graph (measured).  Not re-entrant: one computation at a time per DenominatorGraph and dtype (as a
    training loop runs it).  CUDA's caching allocator already reuses memory."""
    if like.device.type != "cpu":
        return like.new_empty(shape)
    n = math.prod(shape)
    buf = dt.workspace.get(name)
    if buf is None or buf.numel() < n:
        buf = dt.workspace[name] = like.new_empty(n)
    return buf[:n].view(shape)


def _gather(v: torch.Tensor, index: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    return torch.index_select(v, 0, index, out=out)


def _state_values(dt: _DenTensors, v: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """v[state of group k] for every group k: gathered into ``out``, or -- slot layout -- ``v`` itself (the
    broadcast is done by _mul_groups)."""
    return v if dt.slots else _gather(v, dt.group_state, out)


def _mul_groups(dt: _DenTensors, w: torch.Tensor, g: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """out = w * g for group values w [K, B] and g from _state_values (``out`` may be w or g)."""
    if dt.slots and g.shape[0] != w.shape[0]:
        torch.mul(w.view(dt.slots, -1, w.shape[1]), g, out=out.view(dt.slots, -1, w.shape[1]))
        return out
    return torch.mul(w, g, out=out)


def _state_sum(dt: _DenTensors, w: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """out[s] = sum of w[k] over the groups k of state s."""
    if not dt.slots:
        return _mm(dt.state_scatter, w, out)
    w3 = w.view(dt.slots, -1, w.shape[1])
    if dt.slots == 1:
        return out.copy_(w3[0])
    torch.add(w3[0], w3[1], out=out)  # (torch.sum(dim=0, out=) zero-fills out first: slower)
    for i in range(2, dt.slots):
        out.add_(w3[i])
    return out


def _group_sum(dt: _DenTensors, v: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """out[k] = sum over the arcs of group k of p * v[other]."""
    if dt.singleton:
        return _gather(v, dt.group_other, out).mul_(dt.group_prob)
    return _mm(dt.gather_mat, v, out)


def check_lengths(lengths: torch.Tensor | None, B: int, T: int, what: str) -> torch.Tensor | None:
    """Validate ``lengths`` (valid frames per sequence) -> int64 CPU tensor [B], or None
    when absent or all equal to T (the full-length fast path)."""
    if lengths is None:
        return None
    lens = torch.as_tensor(lengths).detach().to("cpu", torch.int64).reshape(-1)
    if lens.numel() != B:
        raise ValueError(f"{what}: lengths has {lens.numel()} entries for {B} sequences")
    if B and (int(lens.min()) < 1 or int(lens.max()) > T):
        raise ValueError(f"{what}: lengths must be in [1, {T}] (the nnet output has {T} frames), got "
                         f"{lens.tolist()}")
    if bool((lens == T).all()):
        return None
    return lens


def valid_frame_mask(lengths: torch.Tensor | None, B: int, T: int, device: torch.device) -> torch.Tensor | None:
    """bool [B, T]: frame t of sequence b is valid (t < lengths[b]); None if all are."""
    if lengths is None:
        return None
    return torch.arange(T, device=device)[None, :] < lengths.to(device)[:, None]


def denominator_forward_backward(
    nnet_output: torch.Tensor,
    den: DenominatorGraph,
    leaky_hmm_coefficient: float = 0.1,
    compute_deriv: bool = True,
    lengths: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None, bool]:
    """Kaldi's DenominatorComputation Forward() (+ Backward() if ``compute_deriv``).

    nnet_output: [B, T, P] raw network output (pseudo log-likelihoods).
    lengths: optional int64 [B], valid frames per sequence (frames >= lengths[b] are padding:
    no contribution to the log-prob, zero derivative).
    Returns (logprob [B] in the output dtype, d logprob / d nnet_output [B, T, P] = the
    den occupations (None unless compute_deriv), ok) where ok is False when Kaldi would
    abandon the minibatch (t = 0 alpha-beta / derivative-sum check off by > 2, or a
    non-finite log-prob).
    """
    _check_leaky(leaky_hmm_coefficient)
    if nnet_output.dim() != 3:
        raise ValueError(f"denominator: nnet_output must be [B, T, P], got shape {tuple(nnet_output.shape)}")
    B, T, P = nnet_output.shape
    lens = check_lengths(lengths, B, T, "denominator")
    c = float(leaky_hmm_coefficient)
    y = nnet_output.detach()
    dt = den.tensors(y.device, y.dtype, P)
    # exp of the clamped output, transposed to [T, P, B] like Kaldi's exp_nnet_output_transposed_.
    # one copy into a reused buffer (never a view of the output: .contiguous() may return one), then in place
    x = torch.clamp(y.permute(1, 2, 0), -30.0, 30.0, out=_scratch(dt, "x", (T, P, B), y)).exp_()
    alphas, tot, groups = _den_alpha(x, dt, c, keep=compute_deriv)
    # sum_i alpha'(t, i) = tot_alpha(t) (1 + c sum_i init(i)): the leak adds c init tot_alpha
    leak = 1.0 + c * dt.init_sum
    if lens is None:
        tot_prob = tot[T] * leak
        logprob = tot_prob.log() + tot[:T].log().sum(0)
    else:
        lens_d = lens.to(y.device)
        bidx = torch.arange(B, device=y.device)
        tot_prob = tot[lens_d, bidx] * leak  # sum_i alpha'(L_b, i)
        cum = torch.cat([tot.new_zeros(1, B), tot[:T].log().cumsum(0)])
        logprob = tot_prob.log() + cum[lens_d, bidx]
    ok = bool(torch.isfinite(logprob).all())
    if not compute_deriv:
        return logprob, None, ok
    deriv, ok_t0 = _den_beta(x, dt, c, alphas, tot, groups, tot_prob, lens)
    out = deriv.permute(2, 0, 1)
    mask = valid_frame_mask(lens, B, T, y.device)
    if mask is not None:  # padded frames: exactly zero (even if their alpha was not finite)
        out = out.masked_fill(~mask[:, :, None], 0.0)
    return logprob, out, ok and ok_t0


_KEEP_GROUP_PRODUCTS_BYTES = 1 << 30  # the forward keeps its per-group products for the backward up to this size


def _den_alpha(x: torch.Tensor, dt: _DenTensors, c: float,
               keep: bool) -> tuple[list[torch.Tensor | None], torch.Tensor, torch.Tensor | None]:
    """The forward pass over x [T, P, B]: (alpha' [S, B] after the leak step of each frame
    0..T, tot_alpha [T+1, B], and -- "dst" mode, ``keep`` -- the group products
    W(t, k) = x(t, pdf_k) sum_{arcs of k} p alpha'(t, src) [T, K, B]).

    With W kept the backward reads alpha' only at frame 0 (its check), so the frames after it are
    computed in two alternating buffers that stay in cache and are returned as None.

    The backward's occupations are W(t, k) beta(t+1, dst_k) / tot_alpha(t): kept, W saves the
    backward one of its three large sparse products per frame (Kaldi recomputes; memory: T K B
    floats, kept only below _KEEP_GROUP_PRODUCTS_BYTES).  Measured on one core: keeping is ~13%
    faster on a 20k-state graph, within 5% either way on the mini den graph (where streaming W
    through memory costs about what the product saves)."""
    T, B = x.shape[0], x.shape[2]
    S, K = dt.init.numel(), dt.group_pdf.numel()
    init = dt.init
    tot = x.new_empty(T + 1, B)  # tot_alpha(t), Kaldi's extra "state"
    xk = x.new_empty(K, B)  # x of each group's pdf
    work = x.new_empty(K, B)
    keep = keep and dt.mode == "dst" and T * K * B * x.element_size() <= _KEEP_GROUP_PRODUCTS_BYTES
    groups = _scratch(dt, "groups", (T, K, B), x) if keep else None
    alpha = _scratch(dt, "alpha", (3 if keep else T + 1, S, B), x)  # alpha-dash after the leak step
    alphas = [alpha[1 + t % 2] if keep and t else alpha[t] for t in range(T + 1)]  # per-frame views
    tots, xs = tot.unbind(0), x.unbind(0)
    tot_rows, init_col = tot.unsqueeze(1).unbind(0), init[:, None]
    alphas[0].copy_(init_col.expand(S, B))
    for t in range(T + 1):
        a = alphas[t]
        torch.sum(a, 0, out=tots[t])
        if c != 0.0:
            a.addmm_(init_col, tot_rows[t], alpha=c)  # alpha += c init tot_alpha
        if t == T:
            break
        _gather(xs[t].div_(tots[t]), dt.group_pdf, xk)  # x(t) / tot_alpha(t), kept so for the backward
        if dt.mode == "dst":
            w = _group_sum(dt, a, groups[t] if groups is not None else work).mul_(xk)
            _state_sum(dt, w, alphas[t + 1])
        else:
            _mm(dt.scatter_mat, _mul_groups(dt, xk, _state_values(dt, a, work), work), alphas[t + 1])
    return [alphas[0]] + [None] * T if keep else alphas, tot, groups


def _den_beta(x: torch.Tensor, dt: _DenTensors, c: float, alphas: list[torch.Tensor | None], tot: torch.Tensor,
              groups: torch.Tensor | None, tot_prob: torch.Tensor,
              lens: torch.Tensor | None) -> tuple[torch.Tensor, bool]:
    """The backward pass: (occupations [T, P, B] of the valid frames, the t = 0 check).
    ``groups``: the forward's kept group products (consumed), or None (then every frame's alpha')."""
    T, P, B = x.shape
    S, K = dt.init.numel(), dt.group_pdf.numel()
    init = dt.init
    deriv = x.new_empty(T, P, B)
    xs, derivs = x.unbind(0), deriv.unbind(0)  # per-frame views, made once
    xk = x.new_empty(K, B)
    work = x.new_empty(K, B)
    work2 = x.new_empty(K, B)
    beta_dash = x.new_empty(S, B)
    ok = True
    # beta'(L_b, i) = 1 / tot_prob_b; beta(L_b, i) = beta' + c sum_k init(k) beta'(L_b, k)
    beta_end = (1.0 + c * init.sum()) / tot_prob  # [B]
    if lens is None:
        beta = beta_end[None, :].expand(S, B).contiguous()
        ends: dict[int, torch.Tensor] = {}
    else:
        beta = x.new_zeros(S, B)  # sequences that ended before t+1: zero (no derivative)
        ends = {int(L): (lens == L).nonzero().reshape(-1).to(x.device) for L in torch.unique(lens).tolist()}
        if T in ends:
            cols = ends.pop(T)
            beta[:, cols] = beta_end[cols][None, :]
    for t in range(T - 1, -1, -1):
        cols = ends.get(t + 1)
        if cols is not None:
            beta[:, cols] = beta_end[cols][None, :].expand(S, cols.numel())
        a = alphas[t]
        _gather(xs[t], dt.group_pdf, xk)  # x(t) / tot_alpha(t) (the forward divided it)
        if dt.mode == "dst" and groups is not None:
            g = _state_values(dt, beta, work)  # beta(t+1, dst)
            _mm(dt.scatter_mat, _mul_groups(dt, xk, g, work2), beta_dash)
            occ = _mul_groups(dt, groups[t], g, groups[t])
        elif dt.mode == "dst":
            z = _mul_groups(dt, xk, _state_values(dt, beta, work), work)  # x * beta(t+1, dst)
            _mm(dt.scatter_mat, z, beta_dash)
            occ = _group_sum(dt, a, work2).mul_(z)
        else:
            w = _group_sum(dt, beta, work).mul_(xk)  # x * sum p beta(t+1, dst)
            _state_sum(dt, w, beta_dash)
            occ = _mul_groups(dt, w, _state_values(dt, a, work2), work2)
        _mm(dt.pdf_scatter, occ, derivs[t])
        if t == 0:
            # BetaGeneralFrameDebug(0): both sums must equal the number of sequences.
            ab = float((a * beta_dash).sum())
            ds = float(deriv[0].sum())
            if not (math.isfinite(ab) and math.isfinite(ds)) or abs(ab - B) > 2.0 or abs(ds - B) > 2.0:
                ok = False
        beta, beta_dash = beta_dash, beta
        if c != 0.0:
            beta.add_((init @ beta)[None, :], alpha=c)  # beta = beta' + c sum_k init(k) beta'(k)
    return deriv, ok


class DenominatorFunction(torch.autograd.Function):
    """logprob[b] = den log-likelihood of sequence b; grad = occupations (Kaldi's den
    derivative, not masked where the output was clamped to [-30, 30])."""

    @staticmethod
    def forward(ctx, nnet_output: torch.Tensor, den: DenominatorGraph, leaky_hmm_coefficient: float,  # type: ignore[override]
                lengths: torch.Tensor | None = None):
        logprob, deriv, _ = denominator_forward_backward(
            nnet_output, den, leaky_hmm_coefficient, compute_deriv=ctx.needs_input_grad[0], lengths=lengths
        )
        ctx.save_for_backward(deriv if deriv is not None else nnet_output.new_empty(0))
        return logprob

    @staticmethod
    def backward(ctx, grad_logprob: torch.Tensor):  # type: ignore[override]
        (deriv,) = ctx.saved_tensors
        return deriv * grad_logprob[:, None, None], None, None, None
