#!/usr/bin/env python3
"""Benchmark of full LF-MMI training steps (ser.train.chain_trainer.ChainTrainer.train_step).

One step = network forward (bf16 autocast on CUDA), LF-MMI (den + num forward-backward, fp32)
+ 0.1 xent, backward, Kaldi's update (l2, max-change, BatchNorm stats scaling, orthonormal
constraint).  The network is the paper's tdnn_1g (TdnnfConfig.tdnn_1g, 9.4M parameters
with 3600 pdfs) unless ``--net mini``; the den graph is random (bench/lfmmi.py's maker)
or ``--den-graph den.pt``; numerator graphs are random e2e-like chains (``--num-phones``
phones per sequence, a first-frame arc and a self-loop per phone).

Reported, all measured in the same run: input frames/s of full steps (chunks x (width +
context) input frames; Kaldi counts the chunk width, given as well), the share of the step
spent in the LF-MMI objective (its forward-backward timed alone on the same output), the
network-only step (forward + backward with a trivial loss) for reference, and peak memory.
The Kaldi anchor (reference/lfmmi-ivector-mfcc-anchors.md section 4: ~800k input frames per
"about a minute" per GPU job, i.e. ~13k frames/s on 2016 GPUs) is printed for comparison.

Examples:
  .venv/bin/python bench/chain_train.py --device cuda                       # 64 x 150, tdnn_1g, 3600 pdfs
  .venv/bin/python bench/chain_train.py --device cpu --chunks 8 --steps 2   # reduced, CPU
  .venv/bin/python bench/chain_train.py --den-graph exp/chain/den.pt --net mini
"""

from __future__ import annotations

import argparse
import math
import resource
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from lfmmi import random_den_graph  # noqa: E402  (bench/lfmmi.py)

from ser.io.torch_io import load_torch  # noqa: E402
from ser.chain.graph import ChainGraph  # noqa: E402
from ser.chain.numerator import NumeratorGraphBatch  # noqa: E402
from ser.nnet import TdnnfConfig, TdnnfModel  # noqa: E402
from ser.train.chain_trainer import ChainTrainer, ChainTrainerConfig  # noqa: E402
from ser.train.minibatch import ChainMinibatch  # noqa: E402

KALDI_ANCHOR_FRAMES_PER_S = 800_000 / 60.0


def random_numerator(num_phones: int, num_pdfs: int, g: torch.Generator) -> ChainGraph:
    """State i -> i+1 on a class-0 pdf, self-loop on i+1 with a class-1 pdf; final at the end."""
    k = num_phones
    pdf0 = torch.randint(0, num_pdfs, (k,), generator=g)
    pdf1 = torch.randint(0, num_pdfs, (k,), generator=g)
    s = torch.arange(k)
    src = torch.cat([s, s + 1])
    dst = torch.cat([s + 1, s + 1])
    initial = torch.full((k + 1,), -math.inf)
    initial[0] = 0.0
    final = torch.full((k + 1,), -math.inf)
    final[k] = 0.0
    return ChainGraph(k + 1, src, dst, torch.cat([pdf0, pdf1]), torch.full((2 * k,), math.log(0.5)),
                      initial, final)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(fn, device: torch.device, steps: int) -> float:
    """Best of ``steps`` timings (after a warm-up): robust to other load on the machine."""
    fn()  # warm-up
    best = math.inf
    for _ in range(steps):
        sync(device)
        t0 = time.perf_counter()
        fn()
        sync(device)
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--net", choices=["tdnn_1g", "mini"], default="tdnn_1g", help="network size")
    ap.add_argument("--pdfs", type=int, default=3600)
    ap.add_argument("--den-states", type=int, default=12000)
    ap.add_argument("--den-arcs", type=int, default=80000)
    ap.add_argument("--den-graph", default="", help="den.pt (overrides the random graph and --pdfs)")
    ap.add_argument("--chunks", type=int, default=64)
    ap.add_argument("--chunk-width", type=int, default=150, help="input frames per chunk (without context)")
    ap.add_argument("--num-phones", type=int, default=15)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--bf16", type=int, default=1)
    ap.add_argument("--num-threads", type=int, default=0)
    a = ap.parse_args()
    if a.num_threads:
        torch.set_num_threads(a.num_threads)
    from ser.device import resolve_device

    device = resolve_device(a.device)
    if a.den_graph:
        d = load_torch(a.den_graph, what="den graph", expect_keys=("num_pdfs",))
        den, pdfs = ChainGraph.from_state_dict(d), int(d["num_pdfs"])
    else:
        pdfs = a.pdfs
        den = random_den_graph(a.den_states, a.den_arcs, pdfs, seed=0, pdf_by_dst=False)
    cfg = TdnnfConfig.tdnn_1g(pdfs) if a.net == "tdnn_1g" else TdnnfConfig.mini(pdfs)
    model = TdnnfModel(cfg, generator=torch.Generator().manual_seed(0))
    nparams = sum(p.numel() for p in model.parameters())
    fsf = model.frame_subsampling_factor
    t_out = a.chunk_width // fsf
    t_in = t_out * fsf + model.left_context + model.right_context
    g = torch.Generator().manual_seed(1)
    graphs = [random_numerator(a.num_phones, pdfs, g) for _ in range(a.chunks)]
    mb = ChainMinibatch(torch.randn(a.chunks, t_in, cfg.feat_dim, generator=g),
                        torch.randn(a.chunks, cfg.ivector_dim, generator=g),
                        NumeratorGraphBatch.from_graphs(graphs),
                        torch.full((a.chunks,), t_out, dtype=torch.long),
                        [f"c{i}" for i in range(a.chunks)]).to(device)
    print(f"torch {torch.__version__}, device {device}"
          + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else
             f", {torch.get_num_threads()} CPU threads"))
    print(f"network {a.net}: {nparams:,} parameters, {pdfs} pdfs, context {model.left_context}/"
          f"{model.right_context}; den graph {den.num_states} states, {den.num_arcs} arcs; minibatch "
          f"{a.chunks} x {a.chunk_width} frames ({t_in} with context, {t_out} output frames)")
    with tempfile.TemporaryDirectory() as tmp:
        trainer = ChainTrainer(model, den, ChainTrainerConfig(bf16=bool(a.bf16), iter0_special=False), tmp, device)
        trainer.schedule = trainer.make_schedule(frames_per_epoch=10**8)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        t_step = timed(lambda: trainer.train_step(mb, 0.3, 5), device, a.steps)
        peak = (torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda"
                else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20)

        with torch.no_grad(), trainer._autocast():
            out = model(mb.feats, mb.ivector)
        y = out["output"].float().detach().requires_grad_(True)
        x = out["output-xent"].float().detach().requires_grad_(True)

        def objective():
            loss, _ = trainer.loss_fn(y, mb.num_graphs, x)
            loss.backward()

        t_obj = timed(objective, device, a.steps)

        def network_only():
            model.zero_grad(set_to_none=True)
            with trainer._autocast():
                o = model(mb.feats, mb.ivector)
            (o["output"].float().square().mean() + o["output-xent"].float().mean()).backward()

        t_net = timed(network_only, device, a.steps)
    frames_in = a.chunks * t_in
    frames_kaldi = a.chunks * a.chunk_width
    print(f"full step:        {t_step * 1e3:9.1f} ms  -> {frames_in / t_step:10.0f} input frames/s "
          f"({frames_kaldi / t_step:10.0f}/s counting chunk width only; {frames_kaldi / t_step / 100:.0f}x real time)")
    print(f"LF-MMI objective: {t_obj * 1e3:9.1f} ms  = {100 * t_obj / t_step:.1f}% of the step")
    print(f"network fwd+bwd:  {t_net * 1e3:9.1f} ms  = {100 * t_net / t_step:.1f}% of the step "
          f"(update, BatchNorm scaling, orthonormal constraint: the rest)")
    print(f"peak memory: {peak:.2f} GiB ({'CUDA allocated' if device.type == 'cuda' else 'process max RSS'})")
    print(f"Kaldi anchor ~{KALDI_ANCHOR_FRAMES_PER_S:,.0f} input frames/s per 2016-era GPU job: "
          f"ratio {frames_kaldi / t_step / KALDI_ANCHOR_FRAMES_PER_S:.2f}x (not measured here)")


if __name__ == "__main__":
    main()
