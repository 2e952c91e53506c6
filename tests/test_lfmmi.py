"""Tests of the LF-MMI objective (ser/chain/{denominator,numerator,objective}.py).

The references are written independently here: brute-force enumeration of every state
path (and, for the leaky HMM, of every leak choice at every frame boundary) in plain
Python floats.  Leaky-HMM model used by the brute force (the meaning of Kaldi's
alpha'(t, i) = alpha(t, i) + c init(i) sum_j alpha(t, j)): at each of the T+1 frame
boundaries t = 0..T (before the first emission, between emissions, after the last one) a
path in state j either stays in j (weight 1) or leaks to any state i (weight c init(i));
it starts in state i with weight init(i) and ends anywhere with weight 1.
"""

from __future__ import annotations

import math
import random

import pytest
import torch

from ser.chain.denominator import DenominatorFunction, DenominatorGraph, denominator_forward_backward
from ser.chain.graph import ChainGraph
from ser.chain.numerator import NumeratorFunction, NumeratorGraphBatch, numerator_forward_backward
from ser.chain.objective import ChainObjfFunction, LFMMILoss


# ---------------------------------------------------------------- graph helpers
def random_graph(num_states: int, num_arcs: int, num_pdfs: int, seed: int, den: bool = True) -> ChainGraph:
    rng = random.Random(seed)
    arcs = [(s, s, rng.randrange(num_pdfs)) for s in range(num_states)]  # a self-loop on every state
    arcs += [(s, (s + 1) % num_states, rng.randrange(num_pdfs)) for s in range(num_states)]  # connected
    while len(arcs) < num_arcs:
        arcs.append((rng.randrange(num_states), rng.randrange(num_states), rng.randrange(num_pdfs)))
    src = torch.tensor([a[0] for a in arcs])
    dst = torch.tensor([a[1] for a in arcs])
    pdf = torch.tensor([a[2] for a in arcs])
    w = torch.tensor([rng.uniform(0.1, 1.0) for _ in arcs], dtype=torch.float64)
    tot = torch.zeros(num_states, dtype=torch.float64).index_add_(0, src, w)
    logp = (w / tot[src]).log()  # each state's arcs sum to one, like a den graph
    if den:
        init = torch.tensor([rng.uniform(0.1, 1.0) for _ in range(num_states)], dtype=torch.float64)
        initial = (init / init.sum()).log()
        final = torch.zeros(num_states, dtype=torch.float64)
    else:
        initial = torch.full((num_states,), -math.inf, dtype=torch.float64)
        initial[0] = 0.0
        final = torch.tensor(
            [math.log(rng.uniform(0.2, 1.0)) if rng.random() < 0.6 else -math.inf for _ in range(num_states)],
            dtype=torch.float64,
        )
        final[num_states - 1] = math.log(0.7)
    return ChainGraph(num_states, src, dst, pdf, logp, initial, final)


def arc_list(g: ChainGraph) -> list[tuple[int, int, int, float]]:
    return [
        (int(s), int(d), int(n), math.exp(float(lp)))
        for s, d, n, lp in zip(g.src.tolist(), g.dst.tolist(), g.pdf.tolist(), g.logp.tolist())
    ]


# ---------------------------------------------------------------- brute-force references
def brute_force(g: ChainGraph, y: list[list[float]], leaky: float, den: bool) -> tuple[float, list[list[float]]]:
    """log of the total weight of all paths, and the pdf posteriors [T][P], by enumeration.

    den=True: den-graph semantics (clamped exp outputs, all states final with weight 1,
    leaky HMM with coefficient ``leaky``).  den=False: numerator semantics (raw outputs,
    the graph's final weights, no leak)."""
    T, P = len(y), len(y[0])
    S = g.num_states
    x = [[math.exp(min(max(v, -30.0), 30.0) if den else v) for v in row] for row in y]
    init = [math.exp(v) for v in g.initial.tolist()]
    final = [1.0] * S if den else [math.exp(v) for v in g.final.tolist()]
    out: dict[int, list[tuple[int, int, float]]] = {s: [] for s in range(S)}
    for s, d, n, p in arc_list(g):
        out[s].append((d, n, p))
    total = 0.0
    counts = [[0.0] * P for _ in range(T)]

    def leaks(u: int):
        yield u, 1.0
        if den and leaky > 0.0:
            for i in range(S):
                yield i, leaky * init[i]

    def rec(t: int, u: int, w: float, pdfs: list[int]) -> None:
        nonlocal total
        for v, lw in leaks(u):  # boundary t
            w2 = w * lw
            if w2 == 0.0:
                continue
            if t == T:
                wf = w2 * final[v]
                total += wf
                for tt, n in enumerate(pdfs):
                    counts[tt][n] += wf
                continue
            for d, n, p in out[v]:
                rec(t + 1, d, w2 * p * x[t][n], pdfs + [n])

    for u in range(S):
        if init[u] > 0.0:
            rec(0, u, init[u], [])
    return math.log(total), [[c / total for c in row] for row in counts]


# ---------------------------------------------------------------- den / num vs brute force
@pytest.mark.parametrize("leaky", [0.0, 0.1, 0.5])
@pytest.mark.parametrize("mode", ["dst", "src"])
@pytest.mark.parametrize("layout", ["grouped", "per-arc"])
@pytest.mark.parametrize("keep", [True, False])
@pytest.mark.parametrize("slots", [True, False])
def test_denominator_matches_brute_force(
    monkeypatch: pytest.MonkeyPatch, leaky: float, mode: str, layout: str, keep: bool, slots: bool
) -> None:
    import ser.chain.denominator as denmod

    # both arc layouts (CSR products over (state, pdf) groups / one group per arc), each in rows of its own
    # or in the slot layout (rows slot * S + state, some empty); the backward with the forward's group
    # products kept and recomputed
    monkeypatch.setattr(denmod, "_PER_ARC_FRACTION", 1.0 if layout == "grouped" else 0.0)
    monkeypatch.setattr(denmod, "_SLOT_PADDING", 100.0 if slots else 0.0)
    if not keep:
        monkeypatch.setattr(denmod, "_KEEP_GROUP_PRODUCTS_BYTES", 0)
    g = random_graph(4, 9, 4, seed=1)
    B, T = 2, 3
    torch.manual_seed(0)
    y = torch.randn(B, T, 4, dtype=torch.float64) * 2.0
    y[1, 1, 2] = 33.0  # one clamped value: the den uses exp(30) there
    den = DenominatorGraph(g, mode=mode)
    dt = den.tensors(y.device, y.dtype, 4)
    assert dt.singleton == (layout == "per-arc") and (dt.slots > 1) == slots
    assert dt.group_pdf.numel() == (dt.slots * 4 if slots else dt.pdf_scatter.values().numel())
    lp, deriv, ok = denominator_forward_backward(y, den, leaky)
    assert ok
    for b in range(B):
        ref_lp, ref_post = brute_force(g, y[b].tolist(), leaky, den=True)
        assert abs(float(lp[b]) - ref_lp) < 1e-4
        assert torch.allclose(deriv[b], torch.tensor(ref_post, dtype=torch.float64), atol=1e-6)


def test_denominator_leaky_differs_from_non_leaky() -> None:
    # guards against the leak silently doing nothing
    g = random_graph(3, 7, 4, seed=5)
    y = torch.randn(1, 3, 4, dtype=torch.float64)
    den = DenominatorGraph(g)
    lp0 = denominator_forward_backward(y, den, 0.0, False)[0]
    lp1 = denominator_forward_backward(y, den, 0.1, False)[0]
    assert float(lp1 - lp0) > 0.05


def test_numerator_matches_brute_force() -> None:
    graphs = [random_graph(4, 8, 4, seed=10 + b, den=False) for b in range(3)]
    T = 5
    torch.manual_seed(1)
    y = torch.randn(3, T, 4, dtype=torch.float64) * 2.0
    y[0, 2, 1] = 40.0  # numerator is log domain: no clamping
    lp, post, ok = numerator_forward_backward(y, NumeratorGraphBatch.from_graphs(graphs))
    assert ok
    for b, g in enumerate(graphs):
        ref_lp, ref_post = brute_force(g, y[b].tolist(), 0.0, den=False)
        assert abs(float(lp[b]) - ref_lp) < 1e-4
        assert torch.allclose(post[b], torch.tensor(ref_post, dtype=torch.float64), atol=1e-6)


# ---------------------------------------------------------------- autograd
def test_gradcheck_denominator_and_numerator() -> None:
    g = random_graph(4, 10, 4, seed=2)
    den = DenominatorGraph(g)
    num = NumeratorGraphBatch.from_graphs([random_graph(3, 6, 4, seed=20 + b, den=False) for b in range(2)])
    torch.manual_seed(2)
    y = torch.randn(2, 4, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda v: DenominatorFunction.apply(v, den, 0.1), (y,))
    assert torch.autograd.gradcheck(lambda v: DenominatorFunction.apply(v, den, 0.0), (y,))
    assert torch.autograd.gradcheck(lambda v: NumeratorFunction.apply(v, num), (y,))
    assert torch.autograd.gradcheck(lambda v: ChainObjfFunction.apply(v, den, num, 0.1)[0], (y,))


def test_objf_gradient_is_num_minus_den_posteriors() -> None:
    g = random_graph(4, 10, 4, seed=3)
    num_g = [random_graph(3, 6, 4, seed=30, den=False)]
    torch.manual_seed(3)
    y = torch.randn(1, 3, 4, dtype=torch.float64, requires_grad=True)
    loss = -ChainObjfFunction.apply(y, DenominatorGraph(g), NumeratorGraphBatch.from_graphs(num_g), 0.1)[0].sum()
    loss.backward()
    _, den_post = brute_force(g, y[0].tolist(), 0.1, den=True)
    _, num_post = brute_force(num_g[0], y[0].tolist(), 0.0, den=False)
    ref = -(torch.tensor(num_post) - torch.tensor(den_post)).to(torch.float64)
    assert torch.allclose(y.grad[0], ref, atol=1e-6)


# ---------------------------------------------------------------- normalisation semantics
@pytest.mark.parametrize("leaky", [0.0, 0.1])
def test_objf_nonpositive_for_subgraph_numerator(leaky: float) -> None:
    g = random_graph(5, 14, 4, seed=4)
    rng = random.Random(4)
    B, T = 4, 5
    nums = []
    for _ in range(B):
        keep = torch.tensor([rng.random() < 0.6 for _ in range(g.num_arcs)])
        keep[:5] = True  # keep the self-loops so that paths of any length exist
        final = torch.where(torch.rand(g.num_states) < 0.5, torch.zeros(5, dtype=torch.float64),
                            torch.full((5,), -math.inf, dtype=torch.float64))
        final[0] = 0.0
        # numerator = subgraph of the den graph composed with the normalization FST:
        # den arc weights, den initial probs, final weight 1 on a subset of states
        nums.append(ChainGraph(5, g.src[keep], g.dst[keep], g.pdf[keep], g.logp[keep], g.initial.clone(), final))
    loss_fn = LFMMILoss(g, leaky_hmm_coefficient=leaky, xent_regularize=0.0, out_of_range_regularize=0.0)
    y = torch.randn(B, T, 4, dtype=torch.float64) * 3.0
    _, info = loss_fn(y, nums)
    assert info.ok
    objf, _, _ = ChainObjfFunction.apply(y, loss_fn.den, NumeratorGraphBatch.from_graphs(nums), leaky)
    assert (objf <= 1e-9).all()
    # the whole den graph as numerator: equal without leak, strictly smaller with it
    whole = [ChainGraph(5, g.src, g.dst, g.pdf, g.logp, g.initial, torch.zeros(5, dtype=torch.float64))] * B
    objf_whole, _, _ = ChainObjfFunction.apply(y, loss_fn.den, NumeratorGraphBatch.from_graphs(whole), leaky)
    if leaky == 0.0:
        assert torch.allclose(objf_whole, torch.zeros(B, dtype=torch.float64), atol=1e-9)
    else:
        assert (objf_whole < -1e-3).all()


# ---------------------------------------------------------------- batching and precision
def test_batched_equals_per_sequence() -> None:
    g = random_graph(6, 20, 5, seed=6)
    nums = [random_graph(4, 9, 5, seed=60 + b, den=False) for b in range(3)]
    loss_fn = LFMMILoss(g, out_of_range_regularize=0.0, xent_regularize=0.0)
    torch.manual_seed(6)
    y = torch.randn(3, 7, 5, dtype=torch.float64, requires_grad=True)
    loss, info = loss_fn(y, nums)
    loss.backward()
    tot = 0.0
    for b in range(3):
        yb = y[b : b + 1].detach().clone().requires_grad_(True)
        lb, ib = loss_fn(yb, nums[b : b + 1])
        lb.backward()
        tot += ib.objf
        assert torch.allclose(yb.grad[0], y.grad[b], atol=1e-10)
    assert abs(tot - info.objf) < 1e-8


@pytest.mark.parametrize("mode", ["dst", "src"])
def test_float32_matches_float64(mode: str) -> None:
    g = random_graph(60, 400, 12, seed=7)
    den = DenominatorGraph(g, mode=mode)
    num = NumeratorGraphBatch.from_graphs([random_graph(10, 30, 12, seed=70 + b, den=False) for b in range(4)])
    torch.manual_seed(7)
    y64 = torch.randn(4, 30, 12, dtype=torch.float64) * 4.0
    for fb, args in ((denominator_forward_backward, (den, 0.1)), (numerator_forward_backward, (num,))):
        lp64, d64, ok64 = fb(y64, *args)
        lp32, d32, ok32 = fb(y64.float(), *args)
        assert ok64 and ok32
        assert torch.allclose(lp32.double(), lp64, rtol=1e-5, atol=1e-3)
        assert torch.allclose(d32.double(), d64, atol=2e-5)
        # posteriors: every frame of every sequence sums to one
        assert torch.allclose(d64.sum(-1), torch.ones(4, 30, dtype=torch.float64), atol=1e-9)


# ---------------------------------------------------------------- regularisers
def test_out_of_range_penalty_derivative() -> None:
    g = random_graph(4, 10, 4, seed=8)
    nums = [random_graph(3, 6, 4, seed=80, den=False)]
    y0 = torch.randn(1, 3, 4, dtype=torch.float64)
    y0[0, 0, 1], y0[0, 2, 3], y0[0, 1, 0] = 35.0, -41.0, 29.0
    r = 0.01

    def grads(**kw) -> tuple[torch.Tensor, torch.Tensor]:
        y = y0.clone().requires_grad_(True)
        loss, _ = LFMMILoss(g, xent_regularize=0.0, out_of_range_regularize=r, **kw)(y, nums)
        loss.backward()
        y2 = y0.clone().requires_grad_(True)
        (-ChainObjfFunction.apply(y2, DenominatorGraph(g), NumeratorGraphBatch.from_graphs(nums), 0.1)[0].sum()).backward()
        return y.grad, y2.grad

    expected = torch.zeros_like(y0)
    expected[0, 0, 1] = r * (35.0 - 30.0)
    expected[0, 2, 3] = r * (-41.0 + 30.0)
    g_loss, g_chain = grads(out_of_range_stochastic=False)
    assert torch.allclose(g_loss - g_chain, expected, atol=1e-12)
    seen = set()
    gen = torch.Generator().manual_seed(0)
    for _ in range(12):
        g_loss, g_chain = grads(out_of_range_stochastic=True, generator=gen)
        diff = g_loss - g_chain
        if torch.allclose(diff, torch.zeros_like(diff), atol=1e-12):
            seen.add(0)
        else:
            assert torch.allclose(diff, 2.0 * expected, atol=1e-12)
            seen.add(2)
    assert seen == {0, 2}


def test_xent_and_l2_terms() -> None:
    g = random_graph(4, 10, 4, seed=9)
    nums = [random_graph(3, 6, 4, seed=90 + b, den=False) for b in range(2)]
    torch.manual_seed(9)
    y = torch.randn(2, 3, 4, dtype=torch.float64, requires_grad=True)
    xent = torch.log_softmax(torch.randn(2, 3, 4, dtype=torch.float64), -1).requires_grad_(True)
    fn = LFMMILoss(g, xent_regularize=0.25, l2_regularize=0.05, out_of_range_regularize=0.0)
    loss, info = fn(y, nums, xent)
    loss.backward()
    num_post = torch.stack([torch.tensor(brute_force(n, y[b].tolist(), 0.0, den=False)[1]) for b, n in enumerate(nums)])
    num_post = num_post.to(torch.float64)
    den_post = torch.stack([torch.tensor(brute_force(g, y[b].tolist(), 0.1, den=True)[1]) for b in range(2)])
    assert torch.allclose(xent.grad, -0.25 * num_post, atol=1e-6)
    assert torch.allclose(y.grad, -(num_post - den_post.double()) + 0.05 * y.detach(), atol=1e-6)
    assert abs(info.xent_objf - float((num_post * xent.detach()).sum())) < 1e-6
    assert abs(info.l2_term - (-0.5 * 0.05 * float((y.detach() ** 2).sum()))) < 1e-9
    ref_objf = sum(
        brute_force(n, y[b].tolist(), 0.0, den=False)[0] - brute_force(g, y[b].tolist(), 0.1, den=True)[0]
        for b, n in enumerate(nums)
    )
    assert abs(info.objf - ref_objf) < 1e-6 and info.num_frames == 6
    assert abs(info.objf_per_frame - ref_objf / 6) < 1e-6
    expected_loss = -ref_objf - 0.25 * info.xent_objf - info.l2_term
    assert abs(float(loss.detach()) - expected_loss) < 1e-6
    loss_n, _ = LFMMILoss(g, xent_regularize=0.25, l2_regularize=0.05, out_of_range_regularize=0.0, normalize=True)(
        y, nums, xent
    )
    assert abs(float(loss_n.detach()) - expected_loss / 6) < 1e-6


def test_impossible_numerator_abandons_minibatch() -> None:
    g = random_graph(4, 10, 4, seed=11)
    # a numerator that needs exactly 2 frames (no loops), used with T = 4: no path
    chain = ChainGraph(
        3, torch.tensor([0, 1]), torch.tensor([1, 2]), torch.tensor([0, 1]),
        torch.zeros(2, dtype=torch.float64), torch.tensor([0.0, -math.inf, -math.inf], dtype=torch.float64),
        torch.tensor([-math.inf, -math.inf, 0.0], dtype=torch.float64),
    )
    y = torch.randn(2, 4, 4, dtype=torch.float64, requires_grad=True)
    loss, info = LFMMILoss(g)(y, [random_graph(3, 6, 4, seed=12, den=False), chain])
    loss.backward()
    assert not info.ok
    assert info.objf == -10.0 * 8
    assert torch.count_nonzero(y.grad) == 0


def test_t0_check_abandons_a_minibatch_whose_derivative_overflows() -> None:
    """BetaGeneralFrameDebug(0) (chain-denominator.cc): sum alpha'(0) beta'(0) and the frame-0
    derivative sum must equal the number of sequences.  A den graph whose arcs all weigh e^-46 times
    a den graph's, with outputs at the -30 clamp on the last frame, makes the float32 total
    probability ~1e-40 (subnormal): the log-prob is still right to float32 precision, but the
    backward starts from 1 / that total, which overflows.  Only the t = 0 check says so."""
    g = random_graph(4, 10, 4, seed=3)
    tiny = ChainGraph(g.num_states, g.src, g.dst, g.pdf, g.logp - 46.0, g.initial, g.final)
    y = torch.zeros(2, 5, 4)
    y[:, -1] = -30.0
    lp64, d64, ok64 = denominator_forward_backward(y.double(), DenominatorGraph(tiny), 0.1)
    assert ok64 and torch.isfinite(d64).all()             # in float64 all is well: the sums are 1 each
    torch.testing.assert_close(d64[:, 0].sum(1), torch.ones(2, dtype=torch.float64))
    lp, deriv, ok = denominator_forward_backward(y, DenominatorGraph(tiny), 0.1)
    assert torch.isfinite(lp).all() and torch.allclose(lp.double(), lp64, rtol=1e-6)
    assert not torch.isfinite(deriv[:, 0]).all()
    assert not ok


def test_bad_input_errors() -> None:
    g = random_graph(4, 10, 4, seed=13)
    fn = LFMMILoss(g)
    with pytest.raises(ValueError, match="numerator graphs"):
        fn(torch.zeros(2, 3, 4), [random_graph(3, 6, 4, seed=1, den=False)])
    with pytest.raises(ValueError, match="leaky"):
        LFMMILoss(g, leaky_hmm_coefficient=1.0)
    with pytest.raises(ValueError, match="columns"):
        denominator_forward_backward(torch.zeros(1, 3, 2), DenominatorGraph(g), 0.1)


@pytest.mark.parametrize("mode", ["dst", "src"])
def test_reused_buffers_do_not_leak_between_calls(mode: str) -> None:
    # the CPU keeps its large buffers in the DenominatorGraph between calls: calls of other shapes (larger,
    # smaller, with lengths) in between change neither the next call's results nor the earlier outputs
    g = random_graph(6, 20, 5, seed=16)
    den = DenominatorGraph(g, mode=mode)
    torch.manual_seed(16)
    ys = [torch.randn(4, 9, 5) * 3.0, torch.randn(3, 5, 5) * 3.0, torch.randn(2, 7, 5) * 3.0]  # largest first
    first = denominator_forward_backward(ys[0], den, 0.1)
    kept = [first[0].clone(), first[1].clone()]
    for y in ys[1:]:
        denominator_forward_backward(y, den, 0.1, lengths=torch.tensor([y.shape[1]] + [2] * (y.shape[0] - 1)))
    assert torch.equal(first[0], kept[0]) and torch.equal(first[1], kept[1])  # the outputs own their memory
    for y in ys:
        fresh = denominator_forward_backward(y, DenominatorGraph(g, mode=mode), 0.1)
        again = denominator_forward_backward(y, den, 0.1)
        assert torch.equal(again[0], fresh[0]) and torch.equal(again[1], fresh[1])


# ---------------------------------------------------------------- variable lengths
def _padded_batch(B: int, T: int, P: int, lengths: list[int], seed: int) -> torch.Tensor:
    """Random outputs whose padded frames hold wild values (they must be ignored)."""
    torch.manual_seed(seed)
    y = torch.randn(B, T, P, dtype=torch.float64) * 2.0
    for b, L in enumerate(lengths):
        y[b, L:] = torch.randn(T - L, P, dtype=torch.float64) * 50.0
    return y


@pytest.mark.parametrize("leaky", [0.0, 0.1])
@pytest.mark.parametrize("mode", ["dst", "src"])
def test_lengths_match_truncated_sequences(leaky: float, mode: str) -> None:
    g = random_graph(5, 14, 4, seed=14)
    den = DenominatorGraph(g, mode=mode)
    nums = [random_graph(4, 9, 4, seed=140 + b, den=False) for b in range(4)]
    lengths = [6, 2, 6, 4]
    y = _padded_batch(4, 6, 4, lengths, seed=14)
    lens = torch.tensor(lengths)
    d_lp, d_post, d_ok = denominator_forward_backward(y, den, leaky, lengths=lens)
    n_lp, n_post, n_ok = numerator_forward_backward(y, NumeratorGraphBatch.from_graphs(nums), lengths=lens)
    assert d_ok and n_ok
    for b, L in enumerate(lengths):
        yb = y[b : b + 1, :L]
        lp1, post1, _ = denominator_forward_backward(yb, den, leaky)
        assert abs(float(d_lp[b] - lp1[0])) < 1e-9
        assert torch.allclose(d_post[b, :L], post1[0], atol=1e-10)
        lp2, post2, _ = numerator_forward_backward(yb, NumeratorGraphBatch.from_graphs(nums[b : b + 1]))
        assert abs(float(n_lp[b] - lp2[0])) < 1e-9
        assert torch.allclose(n_post[b, :L], post2[0], atol=1e-10)
        assert torch.count_nonzero(d_post[b, L:]) == 0 and torch.count_nonzero(n_post[b, L:]) == 0


def test_lengths_brute_force() -> None:
    g = random_graph(3, 6, 4, seed=15)
    nums = [random_graph(4, 8, 4, seed=150 + b, den=False) for b in range(3)]
    lengths = [3, 4, 1]
    y = _padded_batch(3, 4, 4, lengths, seed=15)
    lens = torch.tensor(lengths)
    d_lp, d_post, _ = denominator_forward_backward(y, DenominatorGraph(g), 0.1, lengths=lens)
    n_lp, n_post, _ = numerator_forward_backward(y, NumeratorGraphBatch.from_graphs(nums), lengths=lens)
    for b, L in enumerate(lengths):
        ref_dlp, ref_d = brute_force(g, y[b, :L].tolist(), 0.1, den=True)
        ref_nlp, ref_n = brute_force(nums[b], y[b, :L].tolist(), 0.0, den=False)
        assert abs(float(d_lp[b]) - ref_dlp) < 1e-6 and abs(float(n_lp[b]) - ref_nlp) < 1e-6
        assert torch.allclose(d_post[b, :L], torch.tensor(ref_d, dtype=torch.float64), atol=1e-6)
        assert torch.allclose(n_post[b, :L], torch.tensor(ref_n, dtype=torch.float64), atol=1e-6)


def test_gradcheck_with_lengths() -> None:
    g = random_graph(4, 10, 4, seed=16)
    den = DenominatorGraph(g)
    num = NumeratorGraphBatch.from_graphs([random_graph(3, 6, 4, seed=160 + b, den=False) for b in range(2)])
    lens = torch.tensor([2, 3])
    y = _padded_batch(2, 3, 4, [2, 3], seed=16).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda v: DenominatorFunction.apply(v, den, 0.1, lens), (y,))
    assert torch.autograd.gradcheck(lambda v: NumeratorFunction.apply(v, num, lens), (y,))
    assert torch.autograd.gradcheck(lambda v: ChainObjfFunction.apply(v, den, num, 0.1, lens)[0], (y,))


def test_loss_with_lengths_equals_per_sequence_runs() -> None:
    g = random_graph(6, 20, 5, seed=17)
    nums = [random_graph(4, 9, 5, seed=170 + b, den=False) for b in range(3)]
    lengths = [7, 3, 5]
    y0 = _padded_batch(3, 7, 5, lengths, seed=17)
    y0[0, 1, 2], y0[2, 4, 0] = 36.0, -33.0  # out of range inside the valid frames
    torch.manual_seed(18)
    x0 = torch.log_softmax(torch.randn(3, 7, 5, dtype=torch.float64), -1)
    kw = dict(xent_regularize=0.2, l2_regularize=0.03, out_of_range_regularize=0.01, out_of_range_stochastic=False)
    fn = LFMMILoss(g, **kw)
    y, x = y0.clone().requires_grad_(True), x0.clone().requires_grad_(True)
    loss, info = fn(y, nums, x, lengths=torch.tensor(lengths))
    loss.backward()
    assert info.ok and info.num_frames == sum(lengths)
    tot_loss = tot_objf = tot_xent = tot_l2 = 0.0
    for b, L in enumerate(lengths):
        yb = y0[b : b + 1, :L].clone().requires_grad_(True)
        xb = x0[b : b + 1, :L].clone().requires_grad_(True)
        lb, ib = fn(yb, nums[b : b + 1], xb)
        lb.backward()
        tot_loss += float(lb.detach())
        tot_objf += ib.objf
        tot_xent += ib.xent_objf
        tot_l2 += ib.l2_term
        assert torch.allclose(y.grad[b, :L], yb.grad[0], atol=1e-10)
        assert torch.allclose(x.grad[b, :L], xb.grad[0], atol=1e-10)
        assert torch.count_nonzero(y.grad[b, L:]) == 0 and torch.count_nonzero(x.grad[b, L:]) == 0
    assert abs(float(loss.detach()) - tot_loss) < 1e-8
    assert abs(info.objf - tot_objf) < 1e-8 and abs(info.xent_objf - tot_xent) < 1e-8
    assert abs(info.l2_term - tot_l2) < 1e-8
    assert abs(info.objf_per_frame - tot_objf / sum(lengths)) < 1e-10
    # normalize divides by the valid frames only
    loss_n, _ = LFMMILoss(g, normalize=True, **kw)(y0.clone().requires_grad_(True), nums, x0,
                                                   lengths=torch.tensor(lengths))
    assert abs(float(loss_n.detach()) - tot_loss / sum(lengths)) < 1e-8


def test_lengths_abandoned_and_errors() -> None:
    g = random_graph(4, 10, 4, seed=19)
    chain = ChainGraph(  # needs exactly 2 frames
        3, torch.tensor([0, 1]), torch.tensor([1, 2]), torch.tensor([0, 1]),
        torch.zeros(2, dtype=torch.float64), torch.tensor([0.0, -math.inf, -math.inf], dtype=torch.float64),
        torch.tensor([-math.inf, -math.inf, 0.0], dtype=torch.float64),
    )
    y = torch.randn(2, 4, 4, dtype=torch.float64)
    other = random_graph(3, 6, 4, seed=190, den=False)
    # length 2 makes the 2-frame numerator feasible; length 3 does not
    _, info = LFMMILoss(g)(y, [other, chain], lengths=torch.tensor([4, 2]))
    assert info.ok
    _, info = LFMMILoss(g)(y, [other, chain], lengths=torch.tensor([4, 3]))
    assert not info.ok and info.objf == -10.0 * 7 and info.num_frames == 7
    with pytest.raises(ValueError, match="lengths"):
        LFMMILoss(g)(y, [other, chain], lengths=torch.tensor([5, 2]))
    with pytest.raises(ValueError, match="lengths"):
        LFMMILoss(g)(y, [other, chain], lengths=torch.tensor([0, 2]))
    with pytest.raises(ValueError, match="lengths"):
        LFMMILoss(g)(y, [other, chain], lengths=torch.tensor([4]))
