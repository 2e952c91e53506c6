"""The training loop the trainers share: what varies is a :class:`Task` (a model, a step, a validation).

In the spirit of nanoGPT's ``train.py``::

    resume from <dir>/checkpoint.pt, or task.start()                   # exact, even mid-epoch
    while step < total_steps and not early-stopped:
        for mb in task.batches(epoch, step_in_epoch):                  # GLOBAL minibatches, (seed, epoch)
            sums += task.step(mb)                                      # this rank's share of the update
            every valid_interval minibatches (and at the end):         # Kaldi: compute_prob per iteration
                sums over the ranks; entry = task.point(sums)          # train figures + validation
                keep the best model by task.score(entry); checkpoint
                log Kaldi's "Overall average objective function for 'output' is ... over N frames."
            every checkpoint_interval minibatches: checkpoint          # a mid-epoch resumption point
    task.finish(...)                                                   # final.pt of the selected model

Used by the emotion trainer (ser.emotion.trainer, stage 7), the CTC trainer (ser.train.ctc_trainer, stage 8) and
the paper-2 heads (ser.emotion.ds_heads, stage 9, without files).  The chain trainer (stage 6) keeps its own
Kaldi-style loop (job ramp, max-change, combine) but shares ser.ddp and ser.train.checkpoint.

Data parallel (torchrun, ser.ddp): every rank makes the same global minibatches and :func:`my_share` picks its
rows; the task's ``net`` (the module that runs the forward pass) is wrapped in DistributedDataParallel, which
averages the ranks' gradients, so a step scales its share's loss by the world size over the GLOBAL count.  The
sums of a point are all-reduced before the task sees them; rank 0 alone writes files.

Checkpoint (``checkpoint.pt``, atomic, loaded with ``weights_only=True``): the model, the optimiser, the loop's
position (epoch, minibatch in the epoch), the training sums since the last point (summed over the ranks), the
history, the best model so far, the task's own state (generators, counters), rank 0's RNG states and the task's
options; a checkpoint of other options is an error naming the file.  Since the minibatches of an epoch are a
function of ``(seed, epoch)`` and ``task.batches`` starts at any position, a run killed anywhere and resumed
ends with the parameters of an uninterrupted run.  Kaldi resumes at iteration boundaries only.

``SER_KILL_AT=<glob>`` kills the process (SIGKILL) at a kill point ``<dir>:epoch<k>:step<s>`` (after minibatch
``s`` of epoch ``k``, after any checkpoint it wrote) or ``<dir>:epoch<k>`` (after epoch ``k``'s point and
checkpoint): the test hook for the resumption guarantee.
"""

from __future__ import annotations

import fnmatch
import logging
import os
import signal
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import torch
from torch import nn

from ser import ddp
from ser.io.torch_io import load_torch, save_torch
from ser.progress import progress
from ser.train.checkpoint import rng_state, set_rng_state

log = logging.getLogger(__name__)

__all__ = ["LoopOptions", "Task", "Loop", "kill_point", "my_share", "wrap_ddp"]

CHECKPOINT_FORMAT = "ser.train.loop.v1"


def kill_point(label: str) -> None:
    """Test hook: SIGKILL this process when ``SER_KILL_AT`` (a glob) matches ``label``."""
    pattern = os.environ.get("SER_KILL_AT")
    if pattern and fnmatch.fnmatchcase(label, pattern):
        log.warning("SER_KILL_AT=%s: killing the process at %s", pattern, label)
        logging.shutdown()
        os.kill(os.getpid(), signal.SIGKILL)


def my_share(n: int) -> range:
    """Positions of this rank's rows among the ``n`` of a global minibatch (all of them in one process)."""
    return ddp.shard(n, ddp.rank(), ddp.world_size())


def wrap_ddp(net: nn.Module, device: torch.device) -> nn.Module:
    """``net`` in DistributedDataParallel under torchrun (itself in one process).  No buffer broadcast: the
    ranks' buffers are equal by construction (same start, synchronised BatchNorm statistics)."""
    if ddp.world_size() == 1 or isinstance(net, nn.parallel.DistributedDataParallel):
        return net
    return nn.parallel.DistributedDataParallel(
        net, device_ids=[device.index] if device.type == "cuda" else None, broadcast_buffers=False)


@dataclass(frozen=True)
class LoopOptions:
    """Options of the loop itself, not of a task (``--checkpoint-interval`` of the training programs)."""
    checkpoint_interval: int = 0   # minibatches between mid-epoch checkpoints (0: at validation points only)


class Task:
    """What a trainer supplies: ``model`` and ``optimizer`` (checkpointed), ``net`` (what DDP wraps: the model or
    a module around it), and the methods below; the first four have to be given, the rest have defaults."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    net: nn.Module

    def num_batches(self) -> int:  # minibatches per epoch
        raise NotImplementedError

    def batches(self, epoch: int, start: int) -> Iterator[Any]:  # the epoch's GLOBAL minibatches from ``start``
        raise NotImplementedError

    def step(self, mb: Any, loop: "Loop") -> dict[str, float]:  # one update; this rank's sums for the curve
        raise NotImplementedError

    def point(self, sums: dict[str, float], loop: "Loop") -> dict[str, Any]:  # a history entry (validation)
        raise NotImplementedError

    def options(self) -> dict[str, Any]:  # a checkpoint made with other options is an error
        return {}

    def start(self) -> None:  # a fresh run (seeds, statistics)
        pass

    def score(self, entry: dict[str, Any]) -> tuple | None:  # model selection, higher is better; None: last
        return None

    def extra_state(self) -> dict[str, Any]:  # the task's own state in the checkpoint (generators, counters)
        return {}

    def load_extra_state(self, d: dict[str, Any]) -> None:
        pass


@dataclass
class LoopState:
    epoch: int = 0
    step: int = 0
    step_in_epoch: int = 0
    best: int = -1                                          # history index of the selected point
    history: list[dict[str, Any]] = field(default_factory=list)
    sums: dict[str, float] = field(default_factory=dict)    # training sums since the last point


class Loop:
    """Runs ``task`` for ``total_steps`` minibatches; see the module docstring.  ``out_dir`` None: no files."""

    def __init__(self, task: Task, out_dir: str | Path | None, total_steps: int, device: torch.device,
                 valid_interval: int = 0, patience: int = 0, opts: LoopOptions = LoopOptions(),
                 what: str = "trainer", progress: bool = False) -> None:
        self.task, self.device, self.opts, self.what = task, device, opts, what
        self.out_dir = None if out_dir is None else Path(out_dir)
        self.total_steps, self.patience = int(total_steps), int(patience)
        self._valid_interval = int(valid_interval)
        self.state = LoopState()
        self.best_state: dict[str, torch.Tensor] | None = None
        self.rank = ddp.rank()
        self.progress = progress

    @property
    def valid_interval(self) -> int:
        """Minibatches between points (0 given: one epoch's)."""
        return self._valid_interval or self.task.num_batches()

    # -- checkpoints -------------------------------------------------------------------------------
    @property
    def checkpoint(self) -> Path | None:
        return None if self.out_dir is None else self.out_dir / "checkpoint.pt"

    def save(self) -> None:
        """checkpoint.pt (rank 0; the sums of every rank, so that a resume under any world size has them)."""
        st, sums = self.state, self._reduced_sums()
        self.state.sums = sums if self.rank == 0 else {k: 0.0 for k in sums}
        if self.rank > 0 or self.checkpoint is None:
            return
        save_torch({"format": CHECKPOINT_FORMAT, "options": self.task.options(),
                    "loop": {"epoch": st.epoch, "step": st.step, "step_in_epoch": st.step_in_epoch,
                             "best": st.best, "history": st.history, "sums": sums},
                    "model": self.task.model.state_dict(), "optimizer": self.task.optimizer.state_dict(),
                    "best_state": self.best_state, "task": self.task.extra_state(), "rng": rng_state()},
                   self.checkpoint)

    def load(self, path: str | Path) -> None:
        """Resume from ``path``; other options (or another kind of file) are a one-line error."""
        d = load_torch(path, what=f"{self.what} checkpoint (delete it to restart)",
                       expect_keys=("format", "options", "loop", "model", "optimizer", "task", "rng"))
        if d["format"] != CHECKPOINT_FORMAT:
            raise ValueError(f"{path}: not a training-loop checkpoint (format {d['format']!r}); delete it to restart")
        if d["options"] != self.task.options():
            raise ValueError(f"{path}: trainer options differ from this run's ({d['options']} vs "
                             f"{self.task.options()}); delete it to restart")
        self.task.model.load_state_dict(d["model"])
        self.task.optimizer.load_state_dict(d["optimizer"])
        self.task.load_extra_state(d["task"])
        set_rng_state(d["rng"])
        lp = d["loop"]
        self.state = LoopState(int(lp["epoch"]), int(lp["step"]), int(lp["step_in_epoch"]), int(lp["best"]),
                               list(lp["history"]), dict(lp["sums"]) if self.rank == 0 else
                               {k: 0.0 for k in lp["sums"]})
        self.best_state = d["best_state"]
        log.info("resuming from %s at minibatch %d of %d (epoch %d, minibatch %d of it)", path,
                 self.state.step, self.total_steps, self.state.epoch, self.state.step_in_epoch)

    def resume_or_start(self, resume: bool = True) -> None:
        """Resume from ``checkpoint.pt`` if there is one (and ``resume``), else a fresh start."""
        if resume and self.checkpoint is not None and self.checkpoint.is_file():
            self.load(self.checkpoint)
        else:
            self.task.start()

    # -- the loop ----------------------------------------------------------------------------------
    def stopped(self) -> bool:
        """Early stopping: ``patience`` points without a better score than the selected one."""
        st = self.state
        return self.patience > 0 and st.best >= 0 and len(st.history) - 1 - st.best >= self.patience

    def done(self) -> bool:
        return self.state.step >= self.total_steps or self.stopped()

    def run(self, max_steps: int | None = None) -> None:
        """Train to the end (or ``max_steps`` more minibatches, then checkpoint); call :meth:`resume_or_start`
        first.  The task's ``net`` is DDP-wrapped meanwhile."""
        st, task = self.state, self.task
        bare, task.net = task.net, wrap_ddp(task.net, self.device)
        n, done = task.num_batches(), 0
        try:
            while not self.done() and (max_steps is None or done < max_steps):
                epoch = st.epoch
                for mb in self._bar(task.batches(st.epoch, st.step_in_epoch), n):
                    if st.epoch != epoch:
                        raise RuntimeError(f"{self.what}: epoch {epoch} has more than {n} minibatches")
                    k = st.step_in_epoch
                    for key, v in task.step(mb, self).items():
                        st.sums[key] = st.sums.get(key, 0.0) + v
                    st.step, st.step_in_epoch, done = st.step + 1, st.step_in_epoch + 1, done + 1
                    if st.step_in_epoch == n:
                        st.epoch, st.step_in_epoch = st.epoch + 1, 0
                    self._after_step(epoch, k, max_steps is not None and done >= max_steps)
                    if self.done() or (max_steps is not None and done >= max_steps):
                        break
                if st.epoch == epoch and not self.done() and (max_steps is None or done < max_steps):
                    raise RuntimeError(f"{self.what}: epoch {epoch} ended after {st.step_in_epoch} of {n} minibatches")
        finally:
            task.net = bare  # no DDP hooks left when the process group goes

    def _bar(self, it: Iterator[Any], n: int) -> Iterator[Any]:
        if not self.progress:
            return it
        return progress(it, total=n - self.state.step_in_epoch, desc=f"epoch {self.state.epoch}", mininterval=10,
                    file=sys.stderr, disable=self.rank > 0)

    def _after_step(self, epoch: int, k: int, last_of_call: bool) -> None:
        st = self.state
        label = f"{self.out_dir}:epoch{epoch}:step{k}"
        if st.step % self.valid_interval == 0 or st.step == self.total_steps:
            kill_point(label)
            self._point()
            if st.step_in_epoch == 0:
                kill_point(f"{self.out_dir}:epoch{epoch}")
            return
        ci = self.opts.checkpoint_interval
        if last_of_call or (ci > 0 and st.step % ci == 0):
            self.save()
        kill_point(label)

    def _reduced_sums(self) -> dict[str, float]:
        sums = self.state.sums
        if ddp.world_size() == 1 or not sums:
            return dict(sums)
        keys = sorted(sums)
        tot = ddp.all_reduce_(torch.tensor([sums[k] for k in keys], dtype=torch.float64)).tolist()
        return dict(zip(keys, tot))

    def _point(self) -> None:
        """A point of the curve: the task's figures, model selection, checkpoint."""
        st = self.state
        sums = self._reduced_sums()
        if sums.get("frames", 0) > 0 and "loss" in sums and self.rank == 0:  # nnet3-train's wording
            log.info("Overall average objective function for 'output' is %.6g over %d frames.",
                     -sums["loss"] / sums["frames"], int(sums["frames"]))
        entry = self.task.point(sums, self)
        st.history.append(entry)
        st.sums = {}
        if self.improves(entry):
            st.best = len(st.history) - 1
            self.best_state = {k: v.detach().clone() for k, v in self.task.model.state_dict().items()}
        self.save()

    def improves(self, entry: dict[str, Any]) -> bool:
        """Whether ``entry`` scores better than the selected point (the first point with a score does)."""
        score, best = self.task.score(entry), self.state.best
        return score is not None and (best < 0 or score > self.task.score(self.state.history[best]))

    def selected(self) -> dict[str, Any]:
        """The selected point's entry (loads its model), or the last point's without selection."""
        st = self.state
        if not st.history:
            raise RuntimeError(f"{self.out_dir}: no point of the training curve was reached "
                               f"({self.total_steps} minibatches)")
        if st.best < 0:
            return st.history[-1]
        self.task.model.load_state_dict(self.best_state)
        return st.history[st.best]
