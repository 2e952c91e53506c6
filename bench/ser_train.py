#!/usr/bin/env python3
"""Benchmark of stage 7's training step: the grafted tdnn_1g-size network (ser.emotion).

One step = ser.emotion.trainer.SerTrainer.train_step on a minibatch of ``--chunks`` chunks of
``--chunk-width`` frames (+ the model's 28/28 context): body up to ``--layer`` and the head
forward, frame cross-entropy, backward, Adam, Kaldi's per-minibatch housekeeping.  Measured
in the same run, on the same inputs:

* ``transfer``  the default system: body at learning-rate factor 0.25 (eval mode);
* ``frozen``    factor 0 without the cache: body forward only, head trained;
* ``cached``    factor 0 with the cache: the head alone on stored body outputs;
* reference     the body's forward + backward alone (trivial loss, no optimiser).

Printed: training frames/s (chunk frames, the frames that carry labels, 3 input frames per
output frame) for each, and each step's time relative to the reference.

    .venv/bin/python bench/ser_train.py                      # CPU, tdnn_1g, 64 x 150
    .venv/bin/python bench/ser_train.py --device cuda
    .venv/bin/python bench/ser_train.py --net mini --chunks 16
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from chain_train import timed  # noqa: E402  (bench/chain_train.py: best of n after a warm-up)

from ser.device import resolve_device  # noqa: E402
from ser.emotion.frames import FrameMinibatch  # noqa: E402
from ser.io.batching import FeatureSet, MatrixTable  # noqa: E402
from ser.emotion.graft import make_grafted_model  # noqa: E402
from ser.emotion.trainer import SerTrainConfig, SerTrainer  # noqa: E402
from ser.nnet.tdnnf import TdnnfConfig, TdnnfModel  # noqa: E402


def synthetic_set(n_utts: int, frames: int, cfg: TdnnfConfig, g: torch.Generator) -> FeatureSet:
    keys = [f"utt{i:04d}" for i in range(n_utts)]
    feats = MatrixTable.from_arrays(keys, [torch.randn(frames, cfg.feat_dim, generator=g) for _ in keys])
    ivecs = MatrixTable.from_arrays(keys, [torch.randn(math.ceil(frames / 10), cfg.ivector_dim,
                                                       generator=g) for _ in keys])
    return FeatureSet(feats, ivecs, 10)


def trainer(fs: FeatureSet, cfg: TdnnfConfig, factor: float, a, device, out: Path) -> SerTrainer:
    body = TdnnfModel(cfg, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():  # stored BatchNorm statistics, as a pretrained body has
        body(torch.randn(2, 200, cfg.feat_dim), torch.randn(2, cfg.ivector_dim), outputs=())
    body.eval()
    model = make_grafted_model(body, a.layer, a.hidden_dim, 4, factor, False)
    labels = {u: i % 4 for i, u in enumerate(fs.feats.keys)}
    tcfg = SerTrainConfig(chunk_width=a.chunk_width, minibatch_size=a.chunks, num_epochs=1)
    return SerTrainer(model, tcfg, fs, fs.feats.keys, [], labels, out, device)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--net", choices=["tdnn_1g", "mini"], default="tdnn_1g")
    p.add_argument("--layer", default="tdnnf12")
    p.add_argument("--hidden-dim", type=int, default=1024)
    p.add_argument("--chunks", type=int, default=64)
    p.add_argument("--chunk-width", type=int, default=150)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    a = p.parse_args(argv)
    device = resolve_device(a.device)
    if a.threads:
        torch.set_num_threads(a.threads)
    cfg = TdnnfConfig.tdnn_1g() if a.net == "tdnn_1g" else TdnnfConfig.mini(num_pdfs=1000)
    g = torch.Generator().manual_seed(0)
    fs = synthetic_set(a.chunks, a.chunk_width, cfg, g)
    frames = a.chunks * a.chunk_width
    with tempfile.TemporaryDirectory() as tmp:
        tr = {f: trainer(fs, cfg, f, a, device, Path(tmp) / str(f)) for f in (0.25, 0.0)}
        mb = next(tr[0.25].egs.minibatches(0))
        mb = FrameMinibatch(mb.utt_idx, torch.zeros_like(mb.first_frame), mb.num_out,
                            mb.target.clamp(min=0))  # every chunk full: chunk frames = labelled frames
        x, iv = tr[0.25].egs.inputs(mb)
        x, iv = x.to(device), iv.to(device)
        body = tr[0.25].model.body

        def reference() -> None:
            body.zero_grad(set_to_none=True)
            body.embed(x, iv, upto=a.layer).square().mean().backward()

        results = {"transfer (factor 0.25)": timed(lambda: tr[0.25].train_step(mb), device, a.steps),
                   "frozen body (factor 0), no cache": timed(lambda: tr[0.0].train_step(mb), device, a.steps)}
        tr[0.0]._build_cache()   # the trainer's own cache of the frozen body's outputs
        results["frozen body, cached outputs"] = timed(lambda: tr[0.0].train_step(mb), device, a.steps)
        ref = timed(reference, device, a.steps)
    n_params = sum(p.numel() for p in body.parameters())
    print(f"ser_train: {a.net} up to {a.layer} ({n_params / 1e6:.2f}M body parameters) + head "
          f"{a.hidden_dim} -> 4, {a.chunks} chunks x {a.chunk_width} frames (+{body.left_context}/"
          f"{body.right_context} context), device {device}, {torch.get_num_threads()} CPU threads")
    print(f"  reference: body forward + backward alone  {frames / ref:10.0f} frames/s  ({ref * 1e3:.1f} ms)")
    for name, t in results.items():
        print(f"  {name:38s} {frames / t:10.0f} frames/s  ({t * 1e3:.1f} ms, {t / ref:.2f} x reference)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
