"""DDP training (ser/train/chain_trainer.py under torch.distributed) equals single-process training.

Two CPU processes (gloo, torch.multiprocessing, forked) each get half of a global minibatch and
make one update through ``ChainTrainer.train``; the reference is one single-process update on
the concatenated minibatch.  BatchNorm normalises with each rank's own minibatch statistics
(as Kaldi's jobs do), so the two halves are given the same feature sequences in a different
order (identical batch statistics) but different numerator graphs (different gradients).
The BatchNorm stats averaging is also checked directly with rank-specific stats.
"""

from __future__ import annotations

import math
import os
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

sys.path.insert(0, str(Path(__file__).resolve().parent))

from test_chain_trainer import ListEgs, TinySetup, new_model  # noqa: E402

from ser.train.chain_trainer import ChainTrainer, ChainTrainerConfig  # noqa: E402
from ser.train.minibatch import ChainMinibatch, subset_minibatch  # noqa: E402
from ser.chain.numerator import NumeratorGraphBatch  # noqa: E402


def global_minibatch(tiny: TinySetup) -> ChainMinibatch:
    """4 sequences: feats (x0, x1, x1, x0), different supervisions."""
    model = new_model(tiny)
    a = tiny.minibatch(7, 2, 8, model, sentences=[["the", "dog"], ["a", "cat"]])
    b = tiny.minibatch(7, 2, 8, model, sentences=[["hen", "sat"], ["the", "hen"]])
    b_rev = subset_minibatch(b, [1, 0])  # supervisions of b, reversed
    feats = torch.cat([a.feats, a.feats.flip(0)])
    ivec = torch.cat([a.ivector, a.ivector.flip(0)])
    mb = ChainMinibatch(feats, ivec, NumeratorGraphBatch.from_graphs(
        [_graph(a, 0), _graph(a, 1), _graph(b_rev, 0), _graph(b_rev, 1)]),
        torch.full((4,), 8, dtype=torch.long), ["s0", "s1", "s2", "s3"])
    return mb


def _graph(mb: ChainMinibatch, i: int):
    return subset_minibatch(mb, [i]).num_graphs.graph


def config(optimizer: str = "kaldi-sgd") -> ChainTrainerConfig:
    # SGD is linear in the gradient: an exact check of the gradient sum and of B.  Adam's first
    # step is g / (|g| + eps), ill-conditioned where |g| ~ eps, so its check uses a large eps
    # (it then still depends on the summed gradient's scale and on B through the weight decay)
    return ChainTrainerConfig(num_epochs=1.0, frames_per_iter=10_000, iter0_special=False,
                              initial_effective_lrate=0.01 if optimizer == "kaldi-sgd" else 0.003,
                              final_effective_lrate=0.001, num_jobs_initial=2, num_jobs_final=4,
                              optimizer=optimizer, adam_epsilon=1.0)


def _worker(rank: int, world: int, root: str, init_file: str, tiny: TinySetup, optimizer: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        mb = global_minibatch(tiny)
        half = subset_minibatch(mb, [2 * rank, 2 * rank + 1])
        model = new_model(tiny)
        trainer = ChainTrainer(model, tiny.den_graph, config(optimizer), Path(root) / "ddp")
        trainer.train(ListEgs([half]), resume=False, max_steps=1)
        # BatchNorm stats averaging with rank-specific values
        bn = model.batchnorms()[0]
        before = [bn.stats_count.clone(), bn.stats_sum.clone()]
        with torch.no_grad():
            bn.stats_count.fill_(10.0 * (rank + 1))
            bn.stats_sum.fill_(float(rank))
        trainer._sync_batchnorm_stats()
        ok = bool(bn.stats_count == 15.0) and bool((bn.stats_sum == 0.5).all())
        with torch.no_grad():
            bn.stats_count.copy_(before[0])
            bn.stats_sum.copy_(before[1])
        if rank == 0:
            torch.save({"state": model.state_dict(), "bn_avg_ok": ok}, Path(root) / "ddp_result.pt")
        del trainer  # the DDP wrapper holds gloo work: release it before the process group
        dist.barrier()
    finally:
        dist.destroy_process_group()
    # gloo/DDP native threads can abort at interpreter teardown ("terminate called without an active
    # exception"); the result is on disk, so leave without running the C++ destructors
    os._exit(0)


@pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(), reason="no gloo backend")
@pytest.mark.parametrize("optimizer", ["kaldi-sgd", "adam"])
def test_ddp_update_equals_single_process(tmp_path, optimizer, tiny_chain):
    tiny = TinySetup(tiny_chain)
    # spawn, not fork: a fork after earlier tests started torch's OpenMP pool can deadlock the children
    mp.start_processes(_worker, args=(2, str(tmp_path), str(tmp_path / "rdzv"), tiny, optimizer), nprocs=2,
                       join=True, start_method="spawn")
    got = torch.load(tmp_path / "ddp_result.pt", weights_only=True)
    assert got["bn_avg_ok"]
    mb = global_minibatch(tiny)
    model = new_model(tiny)
    init = {k: v.clone() for k, v in model.state_dict().items()}
    trainer = ChainTrainer(model, tiny.den_graph, config(optimizer), tmp_path / "single_exp")
    trainer.train(ListEgs([mb]), resume=False, max_steps=1)
    moved = 0
    for name, want in model.state_dict().items():
        have = got["state"][name]
        if name.endswith("stats_count") or name.endswith("stats_sum") or name.endswith("stats_sumsq"):
            continue
        torch.testing.assert_close(have, want, rtol=1e-4, atol=1e-6, msg=name)
        moved += int(not torch.equal(want, init[name]))
    assert moved > 10  # the update really changed the parameters
    # BatchNorm stats: the ranks' average = the single-process stats / world size
    for bn_name in [k[: -len(".stats_count")] for k in model.state_dict() if k.endswith(".stats_count")]:
        c1, s1 = model.state_dict()[bn_name + ".stats_count"], model.state_dict()[bn_name + ".stats_sum"]
        c2, s2 = got["state"][bn_name + ".stats_count"], got["state"][bn_name + ".stats_sum"]
        assert math.isclose(float(c2) * 2, float(c1), rel_tol=1e-9)
        torch.testing.assert_close(s2 * 2, s1, rtol=1e-4, atol=1e-4)
