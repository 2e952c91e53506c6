"""ser.train.loop on a toy task: exact mid-epoch resumption, a weights_only checkpoint, model selection, and
under 2 gloo ranks disjoint shares of every minibatch covering each example once per epoch, with the updates of
one process (a linear model with dropout: the RNG state travels in the checkpoint)."""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any, Iterator

import pytest
import torch
import torch.multiprocessing as mp
import torch.nn.functional as F
from torch import nn

from ser import ddp
from ser.train.loop import Loop, LoopOptions, my_share
from test_torchrun import UPDATE_REL, assert_same_updates

N, DIM, BATCH = 22, 5, 4          # 6 minibatches per epoch, the last one of 2 examples


class ToyTask:
    """Regression of 22 examples; minibatches shuffled by (seed, epoch); dropout draws from torch's RNG."""

    def __init__(self, seed: int = 0, score_key: str | None = "valid", dropout: float = 0.2) -> None:
        g = torch.Generator().manual_seed(seed)
        self.x, self.y = torch.randn(N, DIM, generator=g), torch.randn(N, 1, generator=g)
        self.model = nn.Sequential(nn.Dropout(dropout), nn.Linear(DIM, 1))
        with torch.no_grad():
            self.model[1].weight.copy_(torch.randn(1, DIM, generator=g))  # not from torch's global RNG
            self.model[1].bias.copy_(torch.randn(1, generator=g))
        self.net = self.model
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=0.05)
        self.seed, self.score_key = seed, score_key
        self.seen: list[tuple[int, list[int]]] = []  # (epoch, this rank's example ids) per step
        self.points = 0

    def options(self) -> dict[str, Any]:
        return {"seed": self.seed}

    def num_batches(self) -> int:
        return -(-N // BATCH)

    def batches(self, epoch: int, start: int) -> Iterator[tuple[int, torch.Tensor]]:
        order = torch.randperm(N, generator=torch.Generator().manual_seed(1000 * self.seed + epoch))
        for b in order.split(BATCH)[start:]:
            yield epoch, b

    def start(self) -> None:
        torch.manual_seed(self.seed)

    def step(self, mb, loop: Loop) -> dict[str, float]:
        epoch, ids = mb
        mine = ids[list(my_share(len(ids)))]
        self.seen.append((epoch, mine.tolist()))
        self.model.train()
        if len(mine) == 0:
            mine, weight = ids[:1], 0.0  # DDP needs every rank's backward
        else:
            weight = 1.0
        err = F.mse_loss(self.net(self.x[mine]), self.y[mine], reduction="sum") * weight
        self.optimizer.zero_grad(set_to_none=True)
        (err / len(ids) * ddp.world_size()).backward()
        self.optimizer.step()
        return {"loss": float(err.detach()), "n": float(len(mine)) * weight}

    def point(self, sums: dict[str, float], loop: Loop) -> dict[str, Any]:
        self.points += 1
        self.model.eval()
        with torch.no_grad():
            valid = -float(F.mse_loss(self.model(self.x), self.y))
        return {"step": loop.state.step, "train_loss": sums["loss"] / sums["n"], "valid": valid}

    def score(self, entry: dict[str, Any]) -> tuple | None:
        return None if self.score_key is None else (entry[self.score_key],)

    def extra_state(self) -> dict[str, Any]:
        return {"points": self.points}

    def load_extra_state(self, d: dict[str, Any]) -> None:
        self.points = int(d["points"])


def run(out: Path | None, max_steps: int | None = None, interval: int = 0, **kw) -> tuple[ToyTask, Loop]:
    task = ToyTask()
    loop = Loop(task, out, 3 * task.num_batches(), torch.device("cpu"), opts=LoopOptions(interval), **kw)
    loop.resume_or_start()
    loop.run(max_steps)
    return task, loop


def same_params(a: nn.Module, b: nn.Module) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def test_resume_from_a_mid_epoch_checkpoint_equals_an_uninterrupted_run(tmp_path):
    ref, ref_loop = run(None)
    for stop in (1, 4, 7, 8):  # within epochs 0 and 1 (and after a point: 6 minibatches per epoch)
        out = tmp_path / f"stop{stop}"
        run(out, max_steps=stop)
        d = torch.load(out / "checkpoint.pt", weights_only=True)  # the loop's checkpoint: tensors and plain values
        assert (d["loop"]["step"], d["loop"]["epoch"], d["loop"]["step_in_epoch"]) == (stop, stop // 6, stop % 6)
        task, loop = run(out)
        assert loop.state.step == 18 and same_params(task.model, ref.model)
        assert loop.state.history == ref_loop.state.history and task.points == ref.points == 3
    # a checkpoint every 2 minibatches changes nothing either
    task, loop = run(tmp_path / "every2", interval=2)
    assert same_params(task.model, ref.model) and loop.state.history == ref_loop.state.history


def test_selection_keeps_the_best_point_and_patience_stops(tmp_path):
    _, loop = run(None)
    hist = loop.state.history
    best = max(range(3), key=lambda i: (hist[i]["valid"], -i))
    assert loop.state.best == best and loop.selected() == hist[best]
    stopped = ToyTask()
    lp = Loop(stopped, None, 10 * stopped.num_batches(), torch.device("cpu"), patience=1)
    stopped.score = lambda e: (-len(lp.state.history),)  # every point worse than the first: stop after 2
    lp.resume_or_start()
    lp.run()
    assert len(lp.state.history) == 2 and lp.state.step == 12 and lp.state.best == 0


def test_a_checkpoint_of_other_options_is_an_error(tmp_path):
    run(tmp_path, max_steps=2)
    task = ToyTask(seed=1)
    with pytest.raises(ValueError, match="checkpoint.pt: trainer options differ"):
        Loop(task, tmp_path, 18, torch.device("cpu")).resume_or_start()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rank(rank: int, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE="2",
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    ddp.start("cpu")
    task, loop = ToyTask(score_key=None, dropout=0.0), None
    loop = Loop(task, out, 3 * task.num_batches(), torch.device("cpu"))
    loop.resume_or_start()
    loop.run()
    torch.save({"seen": task.seen, "model": task.model.state_dict(), "history": loop.state.history},
               Path(out) / f"rank{rank}.pt")
    ddp.stop()


def test_two_ranks_see_disjoint_shares_covering_every_example_and_make_the_single_update(tmp_path):
    """Under 2 gloo ranks (what utils/torchrun.sh starts) the ranks take disjoint shares of each global
    minibatch, covering every example once per epoch, and end with the single process's parameters (within
    test_torchrun's tolerance: a share of each tensor's change, as float rounding differs) and figures."""
    mp.spawn(_rank, args=(_free_port(), str(tmp_path)), nprocs=2, join=True)
    r = [torch.load(tmp_path / f"rank{k}.pt", weights_only=True) for k in (0, 1)]
    for epoch in range(3):
        ids = [[i for e, s in x["seen"] if e == epoch for i in s] for x in r]
        assert not set(ids[0]) & set(ids[1])
        assert sorted(ids[0] + ids[1]) == list(range(N))  # every example once per epoch
    ref, ref_loop = ToyTask(score_key=None, dropout=0.0), None
    ref_loop = Loop(ref, None, 3 * ref.num_batches(), torch.device("cpu"))
    ref_loop.resume_or_start()
    ref_loop.run()
    init = ToyTask(score_key=None, dropout=0.0).model.state_dict()
    want = ref.model.state_dict()
    for k in want:
        assert torch.equal(r[0]["model"][k], r[1]["model"][k]), k  # the ranks hold one model
    assert_same_updates(r[0]["model"], want, init, list(want), UPDATE_REL)
    for a, b in zip(ref_loop.state.history, r[0]["history"], strict=True):
        assert a["step"] == b["step"] and b["train_loss"] == pytest.approx(a["train_loss"], rel=1e-4)
        assert b["valid"] == pytest.approx(a["valid"], rel=1e-4)
