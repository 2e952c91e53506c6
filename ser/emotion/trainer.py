"""Training one fold of a grafted emotion network: the loop, model selection, checkpoints.

A readable loop in the spirit of nanoGPT's ``train.py``::

    for epoch in range(start, num_epochs):
        for minibatch in egs.minibatches(epoch):            # seeded by (seed, epoch)
            lr = schedule(step)                              # exponential decay, Kaldi-style
            logits = head(body(x)[frames inside the utterance])
            loss = cross_entropy(logits, utterance labels)   # paper 1, Sec. 3.4
            loss.backward(); adam.step(); kaldi housekeeping (BatchNorm stats, orthonormal)
        validate -> UA, WA, frame accuracy, loss            # validation speakers only
        keep the best state by validation (UA, then frame accuracy); checkpoint; early stop

Optimiser: Adam, head at ``lr``, body at ``lr * primary_lr_factor`` (see ser.emotion.graft);
the step size decays exponentially from ``initial_lrate`` to ``final_lrate`` over
``num_epochs`` (Kaldi's effective-learning-rate schedule).  Model selection and early stopping
(``patience`` epochs without a better validation figure) use only the validation speakers of
the training sessions; the test fold is decoded afterwards, once, by ``ser.bin.decode_ser``.

Frozen body (``primary_lr_factor`` 0): the body's outputs never change, so with
``cache_frozen_body`` they are computed once, at every input frame (three passes at frame
phases 0, 1, 2), and training reads minibatches from that table instead of running the body:
the head sees the same frames as without the cache.

Resumption: ``checkpoint.pt`` (atomic) after every epoch holds the model, the optimiser, the
best state so far, the history and the generator of the orthonormal constraint; the data
order is a function of ``(seed, epoch)``.  A run killed at any point and restarted therefore
ends with the same numbers as an uninterrupted one.  ``SER_KILL_AT=<glob>`` kills the process
(SIGKILL) at a matching kill point ``<dir>:epoch<k>`` / ``<dir>:epoch<k>:step<s>`` -- the test
hook for that guarantee.

Data parallel (``NPROC=N steps/ser/train.sh``, ser.ddp): every rank makes the same global
minibatches (a function of ``(seed, epoch)``) and trains on every N-th chunk of each; one DDP
module (:class:`FrameClassifier`: body + head) all-reduces the gradients once per update.  The
loss of a rank is the sum of its frames' cross-entropies over the GLOBAL minibatch's frame count
(times N, as DDP averages the ranks' gradients), and every BatchNorm that trains (the head's; a
from-scratch body's) normalises with the statistics of all ranks' frames (``sync_ranks``), so N
ranks make the single-process update, up to float summation order.  The frozen body's cache and
validation are computed on a share of the utterances per rank and gathered, so every rank sees
the same figures and stops at the same epoch; rank 0 alone writes the checkpoint, the logs and
the final model.  A checkpoint resumes under any number of ranks (the ranks' models, optimiser
and data order are identical).
"""

from __future__ import annotations

import copy
import fnmatch
import json
import logging
import math
import os
import signal
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ser.emotion.frames import FrameEgs, context_of, utterance_outputs
from ser.emotion.graft import GraftedModel
from ser.emotion.plots import plot_curve
from ser.emotion.voting import vote
from ser.eval.metrics import unweighted_accuracy, weighted_accuracy
from ser.io.atomic import atomic_write_text
from ser.io.batching import FeatureSet, MatrixTable, gather_frames
from ser.io.torch_io import TorchFileError, load_torch, save_torch
from ser.nnet.tdnnf import KaldiBatchNorm
from ser.progress import progress
from ser import ddp
from ser.train.checkpoint import rng_state, set_rng_state

log = logging.getLogger(__name__)

CHECKPOINT_FORMAT = "ser.emotion.checkpoint.v1"


def kill_point(label: str) -> None:
    """Test hook: SIGKILL this process when ``SER_KILL_AT`` (a glob) matches ``label``."""
    pattern = os.environ.get("SER_KILL_AT")
    if pattern and fnmatch.fnmatchcase(label, pattern):
        log.warning("SER_KILL_AT=%s: killing the process at %s", pattern, label)
        logging.shutdown()
        os.kill(os.getpid(), signal.SIGKILL)


@dataclass
class SerTrainConfig:
    """Options of one training (the ``ser:`` section of the recipe config holds them)."""

    num_epochs: int = 8              # at most; the selected epoch is chosen on validation
    patience: int = 3                # stop after this many epochs without a better validation
    initial_lrate: float = 1.0e-3    # Adam step size of the head at the start ...
    final_lrate: float = 1.0e-4      # ... and at the end of num_epochs (exponential decay)
    chunk_width: int = 150           # training chunk, input frames (multiple of 3)
    minibatch_size: int = 64         # chunks per minibatch
    eval_chunk_width: int = 300      # evaluation chunk, input frames (results do not depend on it)
    seed: int = 0
    cache_frozen_body: bool = True   # primary_lr_factor 0 only


@dataclass
class EvalResult:
    """Figures of a set of utterances; ``posteriors`` [U, K], ``decisions`` class indices."""

    ua: float
    wa: float
    frame_acc: float
    loss: float
    posteriors: torch.Tensor
    decisions: list[int]

    def figures(self) -> dict[str, float]:
        return {"ua": self.ua, "wa": self.wa, "frame_acc": self.frame_acc, "loss": self.loss}


def score_frames(frame_logits: Sequence[torch.Tensor], targets: Sequence[int]) -> EvalResult:
    """Voting, utterance UA / WA, frame accuracy and mean frame cross-entropy."""
    post, dec = vote(frame_logits)
    correct = sum(int((f.argmax(-1) == t).sum()) for f, t in zip(frame_logits, targets))
    frames = sum(int(f.shape[0]) for f in frame_logits)
    loss = sum(float(F.cross_entropy(f, torch.full((f.shape[0],), t), reduction="sum"))
               for f, t in zip(frame_logits, targets))
    return EvalResult(unweighted_accuracy(targets, dec), weighted_accuracy(targets, dec),
                      correct / frames, loss / frames, post, dec)


@torch.no_grad()
def frame_logits(model: GraftedModel, fs: FeatureSet, utts: Sequence[str], chunk_width: int,
                 device: torch.device, cache: MatrixTable | None = None) -> list[torch.Tensor]:
    """Logits [ceil(T/3), K] of every utterance (eval mode; from the cache when given)."""
    model.eval()
    if cache is None:
        return utterance_outputs(model, fs, utts, context_of(model), chunk_width, device=device)
    fsf = model.frame_subsampling_factor
    return [model.head(cache[u][::fsf].to(device)).float().cpu() for u in utts]


@torch.no_grad()
def body_outputs(model: GraftedModel, fs: FeatureSet, utts: Sequence[str], chunk_width: int,
                 device: torch.device) -> list[torch.Tensor]:
    """The frozen body's output at EVERY input frame of ``utts`` (phases 0, 1, 2 interleaved)."""
    model.eval()
    ctx, fsf = context_of(model), model.frame_subsampling_factor
    phases = [utterance_outputs(model.embed, fs, utts, ctx, chunk_width, phase=s, device=device)
              for s in range(fsf)]
    mats = []
    for i, u in enumerate(utts):
        t = fs.feats.num_rows(u)
        m = torch.empty(t, phases[0][i].shape[1])
        for s in range(fsf):
            m[s::fsf] = phases[s][i][:len(range(s, t, fsf))]
        mats.append(m)
    return mats


class FrameClassifier(nn.Module):
    """Body + head as one module (the one DDP wraps): logits [N, K] of the frames ``inside``
    [B, n] of a minibatch, from its inputs ``(x, ivector)`` or from cached body outputs ``h``."""

    def __init__(self, model: GraftedModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, inside: torch.Tensor, x: torch.Tensor | None = None,
                ivector: torch.Tensor | None = None, h: torch.Tensor | None = None) -> torch.Tensor:
        if h is None:
            h = self.model.embed(x, ivector)
        return self.model.head(h[inside])


class SerTrainer:
    """Trains ``model`` on ``train_utts`` of ``fs`` and selects the epoch on ``valid_utts``;
    writes ``checkpoint.pt``, ``final.pt``, ``valid.json`` and ``training_curve.png`` in
    ``out_dir``."""

    def __init__(self, model: GraftedModel, cfg: SerTrainConfig, fs: FeatureSet,
                 train_utts: Sequence[str], valid_utts: Sequence[str], labels: Mapping[str, int],
                 out_dir: str | Path, device: torch.device | str = "cpu",
                 class_names: Sequence[str] | None = None) -> None:
        self.model, self.cfg, self.fs = model, cfg, fs
        self.class_names = list(class_names) if class_names is not None else None
        self.device = torch.device(device)
        self.model.to(self.device)
        self.valid_utts, self.labels = list(valid_utts), dict(labels)
        self.out_dir = Path(out_dir)
        self.egs = FrameEgs(fs, train_utts, labels, context_of(model), cfg.chunk_width,
                            cfg.minibatch_size, cfg.seed)
        self.optimizer = torch.optim.Adam(model.param_groups(cfg.initial_lrate))
        self.ortho_gen = torch.Generator().manual_seed(cfg.seed + 1)
        self.total_steps = cfg.num_epochs * len(self.egs)
        self.epoch, self.step, self.best_epoch = 0, 0, -1
        self.history: list[dict[str, float]] = []
        self.best_state: dict[str, torch.Tensor] | None = None
        self.cache: MatrixTable | None = None
        self.rank, self.world = ddp.rank(), ddp.world_size()
        self.net: nn.Module = FrameClassifier(model)  # DDP-wrapped in run() under torchrun
        if self.world > 1:
            for bn in model.modules():
                if isinstance(bn, KaldiBatchNorm):
                    bn.sync_ranks = True

    # -- one minibatch ----------------------------------------------------------------------
    def lrate(self) -> float:
        c = self.cfg
        frac = min(1.0, self.step / max(1, self.total_steps))
        return c.initial_lrate * math.exp(frac * math.log(c.final_lrate / c.initial_lrate))

    def _inputs(self, mb) -> dict[str, torch.Tensor | None]:
        if self.cache is not None:
            fsf = self.model.frame_subsampling_factor
            # rows first + fsf * j (clamped) of the per-input-frame table
            h = gather_frames(self.cache, mb.utt_idx, mb.first_frame, fsf * mb.num_out)[:, ::fsf]
            return {"h": h.to(self.device)}
        x, iv = self.egs.inputs(mb)
        return {"x": x.to(self.device), "ivector": None if iv is None else iv.to(self.device)}

    def train_step(self, mb) -> tuple[float, int, int]:
        """One update on the global minibatch ``mb`` (this rank's share of it under DDP);
        returns (this rank's share of the summed frame loss, its correct frames, its frames)."""
        self.model.train()
        lr = self.lrate()
        for g in self.optimizer.param_groups:
            g["lr"] = lr * g["lr_factor"]
        frames = mb.num_frames  # of the global minibatch: the loss is its mean
        if self.world > 1:
            mb = mb.select(ddp.shard(mb.batch_size, self.rank, self.world))
        target = mb.target.to(self.device)
        inside = target >= 0
        logits = self.net(inside, **self._inputs(mb))
        part = F.cross_entropy(logits, target[inside], reduction="sum") / frames
        self.optimizer.zero_grad(set_to_none=True)
        (part * self.world).backward()  # DDP averages the ranks' gradients: their sum is wanted
        self.optimizer.step()
        self.model.after_step(self.ortho_gen)
        self.step += 1
        return float(part.detach()) * frames, int((logits.argmax(-1) == target[inside]).sum()), int(inside.sum())

    # -- epochs -----------------------------------------------------------------------------
    def validate(self) -> EvalResult:
        """Figures of the validation utterances (under DDP each rank computes a share; all get all)."""
        logits = ddp.sharded_map(lambda utts: frame_logits(self.model, self.fs, utts, self.cfg.eval_chunk_width,
                                                           self.device, self.cache), self.valid_utts)
        return score_frames(logits, [self.labels[u] for u in self.valid_utts])

    def train_epoch(self) -> dict[str, float]:
        loss_sum, correct, frames = 0.0, 0, 0
        bar = progress(self.egs.minibatches(self.epoch), total=len(self.egs), desc=f"epoch {self.epoch}",
                   mininterval=10, file=sys.stderr, disable=self.rank > 0)
        for k, mb in enumerate(bar):
            l, c, n = self.train_step(mb)
            loss_sum, correct, frames = loss_sum + l, correct + c, frames + n
            kill_point(f"{self.out_dir}:epoch{self.epoch}:step{k}")
        if self.world > 1:  # the sums over the ranks
            loss_sum, correct, frames = ddp.all_reduce_(torch.tensor([loss_sum, correct, frames],
                                                                     dtype=torch.float64)).tolist()
        return {"train_loss": loss_sum / frames, "train_frame_acc": correct / frames}

    def _better(self, v: EvalResult) -> bool:
        if self.best_epoch < 0:
            return True
        b = self.history[self.best_epoch]
        return (v.ua, v.frame_acc) > (b["valid_ua"], b["valid_frame_acc"])

    def run(self) -> dict[str, Any]:
        """Train (resuming from ``checkpoint.pt``), select, write the outputs; returns the
        selected epoch's validation figures."""
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self._resume()
        if self.model.body_frozen and self.cfg.cache_frozen_body:
            self._build_cache()
        if self.world > 1 and not isinstance(self.net, nn.parallel.DistributedDataParallel):
            self.net = nn.parallel.DistributedDataParallel(
                self.net, device_ids=[self.device.index] if self.device.type == "cuda" else None,
                broadcast_buffers=False)  # the BatchNorm stats are the same on every rank (sync_ranks)
        while self.epoch < self.cfg.num_epochs and not self._stopped():
            rec = {"epoch": self.epoch, **self.train_epoch()}
            v = self.validate()
            rec.update({f"valid_{k}": x for k, x in v.figures().items()}, lrate=self.lrate())
            self.history.append(rec)
            if self._better(v):
                self.best_epoch = self.epoch
                self.best_state = copy.deepcopy(self.model.state_dict())
            log.info("epoch %d: train loss %.4f frame acc %.3f | valid loss %.4f frame acc %.3f "
                     "UA %.3f WA %.3f%s", self.epoch, rec["train_loss"], rec["train_frame_acc"],
                     v.loss, v.frame_acc, v.ua, v.wa, " *" if self.best_epoch == self.epoch else "")
            self.epoch += 1
            if self.rank == 0:
                self._save_checkpoint()
            kill_point(f"{self.out_dir}:epoch{self.epoch - 1}")
        if isinstance(self.net, nn.parallel.DistributedDataParallel):
            self.net = self.net.module  # no DDP hooks left when the process group goes
        return self._finish()

    def _stopped(self) -> bool:
        p = self.cfg.patience
        return p > 0 and self.best_epoch >= 0 and self.epoch - 1 - self.best_epoch >= p

    def _build_cache(self) -> None:
        # same utterance order as the features, so a minibatch's utt_idx indexes both
        keys = list(self.fs.feats.keys)
        mats = ddp.sharded_map(lambda utts: body_outputs(self.model, self.fs, utts, self.cfg.eval_chunk_width,
                                                         self.device), keys)
        self.cache = MatrixTable.from_arrays(keys, mats)
        log.info("frozen body: cached %s outputs of %d frames", self.model.layer,
                 self.cache.data.shape[0])

    # -- files ------------------------------------------------------------------------------
    def _save_checkpoint(self) -> None:
        save_torch({"format": CHECKPOINT_FORMAT, "epoch": self.epoch, "step": self.step,
                    "best_epoch": self.best_epoch, "history": self.history,
                    "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                    "best_state": self.best_state, "ortho_gen": self.ortho_gen.get_state(),
                    "rng": rng_state(), "config": asdict(self.cfg)}, self.out_dir / "checkpoint.pt")

    def _resume(self) -> None:
        path = self.out_dir / "checkpoint.pt"
        torch.manual_seed(self.cfg.seed)
        if not path.is_file():
            return
        d = load_torch(path, what="emotion trainer checkpoint (delete it to restart)",
                       expect_keys=("format", "config", "model", "optimizer", "rng"))
        if d["format"] != CHECKPOINT_FORMAT or d["config"] != asdict(self.cfg):
            raise TorchFileError(f"{path}: made with other options; delete it to restart")
        self.model.load_state_dict(d["model"])
        self.optimizer.load_state_dict(d["optimizer"])
        self.ortho_gen.set_state(d["ortho_gen"])
        set_rng_state(d["rng"])
        self.epoch, self.step, self.best_epoch = int(d["epoch"]), int(d["step"]), int(d["best_epoch"])
        self.history, self.best_state = list(d["history"]), d["best_state"]
        log.info("resuming from %s after epoch %d", path, self.epoch - 1)

    def _finish(self) -> dict[str, Any]:
        if self.best_state is None:
            raise RuntimeError(f"{self.out_dir}: no epoch was trained (num_epochs {self.cfg.num_epochs})")
        self.model.load_state_dict(self.best_state)
        best = self.history[self.best_epoch]
        figures = {k[len("valid_"):]: best[k] for k in ("valid_ua", "valid_wa", "valid_frame_acc",
                                                        "valid_loss")}
        figures.update(epoch=self.best_epoch, epochs_trained=self.epoch,
                       num_valid_utts=len(self.valid_utts))
        if self.rank > 0:
            return figures
        save_torch(dict(self.model.to_dict(), valid=figures, labels=self.class_names),
                   self.out_dir / "final.pt")
        plot_curve(self.history, self.best_epoch, self.out_dir / "training_curve.png",   # exp/ser/<system>/<fold>
                   f"{self.out_dir.parent.name}, fold {self.out_dir.name}", self.model.head.output.out_features)
        atomic_write_text(self.out_dir / "valid.json",
                          json.dumps(dict(figures, history=self.history), indent=1) + "\n")
        return figures

