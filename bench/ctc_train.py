#!/usr/bin/env python3
"""Benchmark of CTC training steps of the DeepSpeech-style model (ser.train.ctc_trainer.CtcTrainer.train_step).

One step = forward of the whole network on a padded minibatch, torch's ctc_loss, backward, Adam.  Reported,
all measured in the same run on the same minibatch: training frames/s (real frames, padding excluded), and
as references the forward alone (eval mode, no graph) and the LSTM alone (forward + backward of layer_4 on
the same sequence shapes), so the share of the step each part takes is visible whatever the machine.  Times
are the best of ``--steps`` runs after a warm-up (robust to other load); CPU time of the process is given
too, since on a shared CPU wall time alone says little.

Examples:
  .venv/bin/python bench/ctc_train.py                          # mini network, CPU, ~2000-frame minibatch
  .venv/bin/python bench/ctc_train.py --net paper --device cuda --utts 32 --frames 400
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ser.ctc.text import BLANK  # noqa: E402
from ser.device import resolve_device  # noqa: E402
from ser.nnet.deepspeech import DeepSpeechConfig, DeepSpeechModel  # noqa: E402
from ser.train.ctc_data import CtcMinibatch  # noqa: E402
from ser.train.ctc_trainer import CtcTrainer, CtcTrainerConfig  # noqa: E402


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(fn, device: torch.device, steps: int) -> tuple[float, float]:
    """(best wall seconds, CPU seconds of that run) of ``steps`` runs after a warm-up."""
    fn()
    best = (math.inf, math.inf)
    for _ in range(steps):
        sync(device)
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        sync(device)
        best = min(best, (time.perf_counter() - t0, time.process_time() - c0))
    return best


def random_minibatch(utts: int, frames: int, feat_dim: int, g: torch.Generator) -> CtcMinibatch:
    """``utts`` utterances of 60-100% of ``frames`` frames, one label per 4 frames (DeepSpeech-like rate)."""
    lengths = (frames * (0.6 + 0.4 * torch.rand(utts, generator=g))).long().clamp(min=8)
    lengths[0] = frames
    x = torch.randn(utts, frames, feat_dim, generator=g)
    for b, n in enumerate(lengths):
        x[b, n:] = 0
    tl = (lengths // 4).clamp(min=1)
    targets = torch.randint(0, BLANK, (int(tl.sum()),), generator=g)
    return CtcMinibatch([f"u{b}" for b in range(utts)], x, lengths, targets, tl)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--net", choices=["mini", "paper"], default="mini")
    p.add_argument("--device", default="auto")
    p.add_argument("--utts", type=int, default=10, help="utterances per minibatch")
    p.add_argument("--frames", type=int, default=200, help="frames of the longest utterance (20 ms each)")
    p.add_argument("--steps", type=int, default=3)
    a = p.parse_args()
    device = resolve_device(a.device)
    g = torch.Generator().manual_seed(0)
    model = DeepSpeechModel(DeepSpeechConfig.named(a.net), generator=g)
    mb = random_minibatch(a.utts, a.frames, model.config.feat_dim, g).to(device)
    with tempfile.TemporaryDirectory() as tmp:
        trainer = CtcTrainer(model, CtcTrainerConfig(), tmp, device)
        t_step = timed(lambda: trainer.train_step(mb), device, a.steps)

        def forward() -> None:
            model.eval()
            with torch.no_grad():
                model(mb.feats, lengths=mb.lengths)

        t_fwd = timed(forward, device, a.steps)
        h = torch.randn(a.utts, a.frames, model.config.cell_dim, device=device, requires_grad=True)
        t_lstm = timed(lambda: model.layer_4(h)[0].sum().backward(), device, a.steps)
    real = mb.num_frames
    print(f"bench/ctc_train.py: {a.net} network ({model.num_params():,} parameters) on {device}, "
          f"torch threads {torch.get_num_threads()}; minibatch {a.utts} x {a.frames} padded frames, {real} real")
    for name, (wall, cpu) in (("training step", t_step), ("forward alone (reference)", t_fwd),
                              ("LSTM fwd+bwd alone (reference)", t_lstm)):
        print(f"  {name:32s} {wall * 1000:8.1f} ms  {real / wall:9.0f} frames/s  (CPU {cpu * 1000:.0f} ms)")
    print(f"  step / forward = {t_step[0] / t_fwd[0]:.2f}; LSTM share of the step = {t_lstm[0] / t_step[0]:.0%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
