#!/usr/bin/env python3
"""Benchmark of the chain denominator forward-backward (ser.chain.denominator).

Times Kaldi-style probability-domain forward-backward (``denominator_forward_backward``:
forward + backward + occupations) against a naive log-semiring PyTorch version written
here (per frame: gather over arcs, per-state logsumexp by scatter, leaky HMM in log space;
gradient by autograd) on the same graph and output, and prints the ratio.  The naive
version keeps every frame's [B, A] intermediates for autograd, so it is run on
``--naive-chunks`` sequences (default: the full minibatch when it fits); both
implementations are timed on that same configuration for the ratio, and ours also on the
full ``--chunks``.

Examples:
  .venv/bin/python bench/lfmmi.py                       # 64 x 50 frames, random 20k-state graph
  .venv/bin/python bench/lfmmi.py --states 30000 --arcs 200000 --pdfs 3500
  .venv/bin/python bench/lfmmi.py --den-graph exp/chain/den_graph.pt
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from ser.chain.denominator import DenominatorGraph, denominator_forward_backward
from ser.chain.graph import ChainGraph
from ser.io.torch_io import load_torch


def random_den_graph(states: int, arcs: int, pdfs: int, seed: int, pdf_by_dst: bool) -> ChainGraph:
    """Random den-like graph: a self-loop on every state, a ring for connectivity, the
    rest random; arc probs normalised per state; random initial probs.  With
    ``pdf_by_dst`` every arc entering a state carries that state's pdf."""
    g = torch.Generator().manual_seed(seed)
    s = torch.arange(states)
    extra = arcs - 2 * states
    if extra < 0:
        raise ValueError("--arcs must be at least 2 * --states")
    src = torch.cat([s, s, torch.randint(0, states, (extra,), generator=g)])
    dst = torch.cat([s, (s + 1) % states, torch.randint(0, states, (extra,), generator=g)])
    if pdf_by_dst:
        pdf = torch.randint(0, pdfs, (states,), generator=g)[dst]
    else:
        pdf = torch.randint(0, pdfs, (arcs,), generator=g)
    w = torch.rand(arcs, generator=g, dtype=torch.float64) + 0.1
    tot = torch.zeros(states, dtype=torch.float64).index_add_(0, src, w)
    init = torch.rand(states, generator=g, dtype=torch.float64) + 0.01
    return ChainGraph(
        states, src, dst, pdf, (w / tot[src]).log().float(), (init / init.sum()).log().float(),
        torch.zeros(states),
    )


def naive_den_logprob(y: torch.Tensor, g: ChainGraph, leaky: float) -> torch.Tensor:
    """Straightforward log-semiring den forward (same model: clamp, leaky HMM, all final)."""
    B, T, P = y.shape
    S = g.num_states
    src, dst, pdf = g.src.to(y.device), g.dst.to(y.device), g.pdf.to(y.device)
    logp = g.logp.to(y)
    log_init = g.initial.to(y)
    yc = y.clamp(-30.0, 30.0)
    idx = dst[None, :].expand(B, -1)

    def leak(a: torch.Tensor) -> torch.Tensor:
        if leaky == 0.0:
            return a
        return torch.logaddexp(a, math.log(leaky) + log_init[None, :] + torch.logsumexp(a, 1, keepdim=True))

    alpha = leak(log_init[None, :].expand(B, S))
    for t in range(T):
        score = alpha[:, src] + logp[None, :] + yc[:, t, pdf]  # [B, A]
        m = torch.full((B, S), -math.inf, device=y.device, dtype=y.dtype)
        m = m.scatter_reduce(1, idx, score.detach(), reduce="amax", include_self=True)
        m = torch.where(torch.isfinite(m), m, torch.zeros_like(m))
        s = torch.zeros((B, S), device=y.device, dtype=y.dtype).scatter_add(1, idx, (score - m.gather(1, idx)).exp())
        alpha = leak(s.log() + m)
    return torch.logsumexp(alpha, 1)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(fn, device: torch.device) -> tuple[float, float]:
    """(wall-clock, process CPU time) of one run of ``fn``.  With one CPU thread the CPU time is the robust
    figure on a shared machine: it does not count the time the process waited for a core."""
    t0, c0 = time.perf_counter(), time.process_time()
    fn()
    sync(device)
    return time.perf_counter() - t0, time.process_time() - c0


def best(times: list[tuple[float, float]]) -> tuple[float, float]:
    return min(t[0] for t in times), min(t[1] for t in times)


def time_it(fn, device: torch.device, repeats: int) -> tuple[float, float]:
    """Best wall-clock and best CPU time over ``repeats`` runs after a warm-up (which also builds the
    cached CSR tensors)."""
    timed(fn, device)
    return best([timed(fn, device) for _ in range(repeats)])


def time_pair(fa, fb, device: torch.device, repeats: int) -> tuple[tuple[float, float], tuple[float, float]]:
    """``time_it`` of two functions, their runs alternating (a, b, a, b, ...), so that both see the
    same spells of a shared machine's drifting speed; the best of each.  Each timed run follows an
    untimed one of the same function, as in ``time_it``'s repeated runs (steady state: the other
    function's run would have evicted its buffers from the caches)."""
    runs: tuple[list, list] = ([], [])
    for _ in range(repeats):
        for fn, times in zip((fa, fb), runs):
            timed(fn, device)
            times.append(timed(fn, device))
    return best(runs[0]), best(runs[1])


def run(device: torch.device, graph: ChainGraph, args: argparse.Namespace) -> None:
    P = max(args.pdfs or 0, graph.num_pdfs_used)
    den = DenominatorGraph(graph)
    gen = torch.Generator().manual_seed(1)
    y_full = (torch.randn(args.chunks, args.frames, P, generator=gen) * 2.0).to(device)
    nb = min(args.naive_chunks, args.chunks)
    y_small = y_full[:nb].contiguous()
    g_dev = graph.to(device)
    print(f"[{device}] den graph: {graph.num_states} states, {graph.num_arcs} arcs, {P} pdfs; "
          f"arc groups ({den.mode}, pdf): {den.num_groups}")

    def ours(y: torch.Tensor):
        return denominator_forward_backward(y, den, args.leaky_hmm_coefficient, compute_deriv=True)

    def naive(y: torch.Tensor):
        yy = y.detach().requires_grad_(True)
        lp = naive_den_logprob(yy, g_dev, args.leaky_hmm_coefficient)
        lp.sum().backward()
        return lp.detach(), yy.grad

    def show(what: str, n: int, t: tuple[float, float], note: str = "") -> None:
        cpu = f", CPU time {t[1] * 1e3:9.1f} ms" if device.type == "cpu" else ""
        print(f"[{device}] {what} fwd+bwd {n} x {args.frames}: {t[0] * 1e3:9.1f} ms{cpu}{note}")

    show("ours ", args.chunks, time_it(lambda: ours(y_full), device, args.repeats))
    if args.skip_naive:
        return
    t_ours, t_naive = time_pair(lambda: ours(y_small), lambda: naive(y_small), device, args.repeats)
    lp_o, d_o, ok = ours(y_small)
    lp_n, d_n = naive(y_small)
    show("ours ", nb, t_ours)
    show("naive", nb, t_naive, " (log semiring + autograd)")
    cpu = f", CPU time {t_naive[1] / t_ours[1]:.1f}x" if device.type == "cpu" else ""
    print(f"[{device}] speed-up naive/ours: {t_naive[0] / t_ours[0]:.1f}x{cpu}   "
          f"(max |logprob diff| {float((lp_o - lp_n).abs().max()):.2e}, "
          f"max |deriv diff| {float((d_o - d_n).abs().max()):.2e}, ok={ok})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--states", type=int, default=20000)
    ap.add_argument("--arcs", type=int, default=150000)
    ap.add_argument("--pdfs", type=int, default=None,
                    help="nnet output columns (default: 3500 for the random graph, the den graph's pdf count for --den-graph)")
    ap.add_argument("--pdf-by-dst", action="store_true", help="random graph: arcs into a state share its pdf")
    ap.add_argument("--den-graph", default="", help="torch.save'd ChainGraph.state_dict() (overrides the random graph)")
    ap.add_argument("--chunks", type=int, default=64)
    ap.add_argument("--frames", type=int, default=50)
    ap.add_argument("--naive-chunks", type=int, default=64)
    ap.add_argument("--leaky-hmm-coefficient", type=float, default=0.1)
    ap.add_argument("--repeats", type=int, default=5, help="timed runs of each version (alternating); the best")
    ap.add_argument("--skip-naive", action="store_true")
    ap.add_argument("--device", default="all", help="cpu, cuda or all (cpu and, if available, cuda)")
    ap.add_argument("--num-threads", type=int, default=0, help="torch CPU threads (0: torch default)")
    args = ap.parse_args()
    if args.num_threads:
        torch.set_num_threads(args.num_threads)
    if args.den_graph:
        graph = ChainGraph.from_state_dict(load_torch(args.den_graph, what="den graph"))
    else:
        graph = random_den_graph(args.states, args.arcs, args.pdfs or 3500, seed=0, pdf_by_dst=args.pdf_by_dst)
    devices = [torch.device("cpu")] if args.device in ("cpu", "all") else []
    if args.device in ("cuda", "all") and torch.cuda.is_available():
        devices.append(torch.device("cuda"))
    print(f"torch {torch.__version__}, CPU threads {torch.get_num_threads()}")
    for d in devices:
        run(d, graph, args)


if __name__ == "__main__":
    main()
