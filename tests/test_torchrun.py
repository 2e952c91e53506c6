"""The real launchers: ``NPROC=2 steps/train_chain.sh`` (torchrun, gloo on CPU) and, on a Slurm cluster,
``srun steps/train_chain.sh`` in a 2-task job (torchrun agents meeting at a c10d rendezvous) train the model of
the single-process run over the same global minibatches (tests/test_ddp.py checks one update in-process with
torch.multiprocessing; here it is the programs, their egs sharding and their launch).

What DDP guarantees, and what is asserted:
* the same data: each global minibatch of the single process is split over the ranks, disjoint, every
  training sequence once per pass (test_ranks_share_each_minibatch, on the program's own egs);
* one rank is the single process: ``torchrun --nproc-per-node 1`` gives the same model bit for bit;
* two ranks make the same updates up to float rounding.  With every utterance given the same features and
  i-vector, each rank's BatchNorm statistics equal the whole minibatch's (each rank normalises with its own
  minibatch, as Kaldi's jobs do), so the sum of the ranks' gradients equals the single process's -- but only
  through a cancellation (the BatchNorm backward subtracts each rank's mean gradient), which float32 does
  inexactly.  Measured (2026-12, this test's data and options): the same runs in float64 agree to 4e-14 of
  the change training made to each tensor, over 8 updates; in float32 the hidden layers' gradients differ by
  ~1e-4 relative at the 2nd update, ~1e-3 at the 4th and by as much as the gradient itself from the 5th, and a
  single process with OMP_NUM_THREADS=2 instead of 1 already moves as far from the 1-thread run.  The gap is
  float rounding amplified, not a divergence; the tolerance of 8 updates fitted one machine's reduction
  order.  So the comparison runs 2 minibatches (4 updates, iteration 0's halves) at a learning rate of 3e-4,
  where float32 keeps the gap at rounding level, and allows each tensor 5% of its own change plus 4 float32
  ulps of its size (measured worst: 0.45% of the change; at 1e-4 0.3%; at 1e-3 the gap already reaches half
  the change within these 4 updates); a rank's gradient lost, doubled or taken from the wrong sequences
  changes the updates by tens of percent.  The stored BatchNorm statistics are recomputed after training, each rank
  normalising its own minibatches, which mix frame shifts otherwise than the single process's: the ranks'
  average equals the single run's to 1% (measured up to 2.4e-3; tests/test_ddp.py checks the averaging
  itself exactly).  The objectives after training agree to 3e-4 per frame (measured: up to
  5e-5; the 4 updates moved them by 3e-2 to 9e-2).

kaldi-sgd (linear in the gradient) is used: Adam's first steps (a sign per weight) amplify rounding.
The check is not vacuous: nine in ten of the trained tensors move by more than 10 times their tolerance.
"""

from __future__ import annotations

import os
import random
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from ser.chain.chain_dir import ChainDir
from ser.chain.lang import prepare_dict, prepare_lang
from ser.io.datadir import DataDir
from ser.io.tables import ArkScpWriter
from ser.nnet.tdnnf import TdnnfConfig, TdnnfModel
from test_chain_graphs import DIC
from test_slurm import _cluster_problem, srun_two_tasks

ROOT = Path(__file__).resolve().parents[1]
TRAIN = ["--net", "mini", "--device", "cpu", "--optimizer", "kaldi-sgd", "--egs-type", "e2e",
         "--num-epochs", "0.34", "--frames-per-iter", "2000", "--num-valid-utts", "2",
         "--e2e-minibatch-size", "150=8", "--dropout-schedule", "0,0", "--srand", "1",
         "--initial-effective-lrate", "3e-4", "--final-effective-lrate", "3e-4"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> Path:
    """lang, 18 utterances (2 held out for validation), i-vectors and the chain dir (den/num graphs)."""
    root = tmp_path_factory.mktemp("torchrun")
    rng = random.Random(0)
    words = "a the cat sat dog hen low".split()
    text = {f"spk{i % 4}-u{i:02d}": " ".join(rng.choice(words) for _ in range(rng.randint(2, 4))) for i in range(18)}
    (root / "dic").write_text(DIC)
    (root / "text").write_text("".join(f"{u} {t}\n" for u, t in sorted(text.items())))
    prepare_dict(root / "dic", root / "dict", [root / "text"])
    prepare_lang(root / "dict", "<unk>", root / "lang")
    g = np.random.default_rng(0)
    x = g.normal(0, 1, (120, 40)).astype(np.float32)
    iv = np.repeat(g.normal(0, 1, (1, 10)), 12, axis=0).astype(np.float32)
    data, ivd = root / "data", root / "ivectors"
    data.mkdir()
    ivd.mkdir()
    with ArkScpWriter(data / "feats.ark", data / "feats.scp") as wf, \
            ArkScpWriter(ivd / "ivector_online.ark", ivd / "ivector_online.scp") as wi:
        for u in sorted(text):
            wf.write(u, x)
            wi.write(u, iv)
    (ivd / "ivector_period").write_text("10\n")
    feats = dict(line.split(None, 1) for line in (data / "feats.scp").read_text().splitlines())
    DataDir(utt2spk={u: u.split("-")[0] for u in text}, text=text, feats=feats,
            extras={"utt2num_frames": {u: "120" for u in text}}).write(data)
    r = subprocess.run(["steps/chain/prepare_e2e.sh", "--type", "biphone", "--min-biphone-count", "3",
                        "--min-monophone-count", "2", "--num-extra-lm-states", "5", str(data), str(root / "lang"),
                        str(root / "chain")], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return root


def train_args(root: Path, exp: str) -> list[str]:
    return [*TRAIN, str(root / "data"), str(root / "ivectors"), str(root / "chain"), str(root / exp)]


EPS32 = torch.finfo(torch.float32).eps
UPDATE_REL = 0.05  # of each tensor's change; measured worst 0.0045 (module docstring)
STATS_RTOL = 1e-2  # BatchNorm statistics, relative to their scale; measured up to 2.4e-3 (module docstring)
OBJF_ATOL = 3e-4  # per frame; measured up to 5e-5 (module docstring)


def initial_model(root: Path) -> dict:
    """The initial model of --srand 1 (ser.bin.train_chain); its LDA layer is estimated, not trained."""
    return TdnnfModel(TdnnfConfig.mini(ChainDir.load(root / "chain").num_pdfs, ivector_dim=10),
                      generator=torch.Generator().manual_seed(1)).state_dict()


def trained_tensors(model: dict) -> list[str]:
    return [n for n, w in model.items() if w.is_floating_point() and ".stats_" not in n and ".lda." not in n]


def update_tolerance(want: torch.Tensor, init: torch.Tensor, rel: float) -> float:
    """``rel`` of the largest change training made to the tensor, plus 4 float32 ulps of its size."""
    return rel * float((want - init).abs().max()) + 4 * EPS32 * float(want.abs().max())


def assert_same_updates(got: dict, want: dict, init: dict, names: list[str], rel: float) -> None:
    """Each of ``names`` in ``got`` within :func:`update_tolerance` of ``want``; and training moved
    nine in ten of them by more than 10 tolerances (the check is not vacuous)."""
    slack = []
    for n in names:
        tol = update_tolerance(want[n], init[n], rel)
        diff = float((got[n] - want[n]).abs().max())
        assert diff <= tol, f"{n}: differs by {diff:.3g}, allowed {tol:.3g} ({rel:g} of its change)"
        slack.append(float((want[n] - init[n]).abs().max()) > 10 * tol)
    assert names and sum(slack) >= 0.9 * len(names), [n for n, ok in zip(names, slack) if not ok]


def run_train(root: Path, exp: str, env: dict, launcher: list[str] | None = None) -> dict:
    """Trains into ``root/exp`` with steps/train_chain.sh (or ``launcher``); returns the checkpoint."""
    cmd = [*(launcher or ["steps/train_chain.sh"]), *train_args(root, exp)]
    r = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-3000:]
    return torch.load(root / exp / "checkpoint.pt", weights_only=True)


@pytest.fixture(scope="module")
def single(setup) -> dict:
    ckpt = run_train(setup, "single", ENV)
    assert ckpt["trainer"]["total_steps"] == 2 and ckpt["trainer"]["history"][-1]["updates"] == 4
    return ckpt


def assert_same_stats(have: dict, want: dict, world: int, rtol: float = STATS_RTOL) -> None:
    """The stored BatchNorm statistics of ``have`` times ``world`` equal ``want``'s within ``rtol``."""
    for name in (n for n in want if n.endswith(".stats_count")):
        bn = name[:-len("count")]
        count, sumsq = want[bn + "count"], want[bn + "sumsq"]
        torch.testing.assert_close(have[bn + "count"] * world, count, rtol=0, atol=0)
        torch.testing.assert_close(have[bn + "sumsq"] * world, sumsq, rtol=rtol, atol=0,
                                   msg=lambda m: f"{bn}sumsq: {m}")
        # a channel's sum against its scale sqrt(count * sumsq) (>= |sum|): a mean near 0 has no relative precision
        diff = (have[bn + "sum"] * world - want[bn + "sum"]).abs()
        assert bool((diff <= rtol * (count * sumsq).sqrt()).all()), f"{bn}sum: off by {float(diff.max()):.3g}"


def assert_same_training(single: dict, ddp_final: Path, world: int, init: dict) -> None:
    """Parameters equal up to rounding (:func:`assert_same_updates`); the stored BatchNorm statistics are
    the ranks' average (the single run's / world); the objectives after training agree."""
    got = torch.load(ddp_final.parent / "checkpoint.pt", weights_only=True)
    want, have = single["model"], got["model"]
    assert have.keys() == want.keys()
    names = trained_tensors(want)
    assert len(names) > 40
    assert_same_updates(have, want, init, names, UPDATE_REL)
    assert_same_stats(have, want, world)
    h_want, h_got = single["trainer"]["history"], got["trainer"]["history"]
    assert len(h_got) == len(h_want)
    for a, b in zip(h_want, h_got):
        for k in ("train_objf", "train_xent", "valid_objf", "valid_xent"):
            assert b[k] == pytest.approx(a[k], abs=OBJF_ATOL), k


def test_ranks_share_each_minibatch(setup):
    """The program's egs (ser.bin.train_chain.build_egs): rank r of 2 takes a disjoint part of each
    single-process minibatch; together they are the minibatch, and a pass visits every sequence once."""
    from ser.bin.train_chain import build_egs, parse_args

    a = parse_args(train_args(setup, "unused"))
    model = TdnnfModel(TdnnfConfig.mini(ChainDir.load(setup / "chain").num_pdfs, ivector_dim=10))
    whole, seen = build_egs(a, model, 0, 1)[0], []
    parts = [build_egs(a, model, r, 2)[0] for r in range(2)]
    for epoch in (0, 1):
        for egs in (whole, *parts):
            egs.set_epoch(epoch)
        batches = list(zip(whole, *parts, strict=True))
        assert len(batches) == 2
        for mb, r0, r1 in batches:
            assert set(r0.keys).isdisjoint(r1.keys) and r0.batch_size == r1.batch_size == 4
            assert sorted(r0.keys + r1.keys) == sorted(mb.keys)
            seen += list(mb.keys)
        assert sorted(seen) == sorted(u for u in whole.egs.utts), "a pass visits each sequence once"
        seen = []


def test_torchrun_one_rank_is_the_single_process(setup, single):
    """torchrun with one rank: the DDP helpers are the identity, the model is the same bit for bit."""
    got = run_train(setup, "nproc1", ENV, [".venv/bin/torchrun", "--standalone", "--nproc-per-node", "1",
                                           "-m", "ser.bin.train_chain"])
    for name, w in single["model"].items():
        assert torch.equal(got["model"][name], w), name


def test_nproc_2_torchrun_equals_single_process(setup, single):
    r = subprocess.run(["steps/train_chain.sh", *train_args(setup, "nproc2")], cwd=ROOT,
                       env={**ENV, "NPROC": "2"}, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "2 rank(s)" in (setup / "nproc2" / "log" / "train.log").read_text()
    assert_same_training(single, setup / "nproc2" / "final.pt", 2, initial_model(setup))


@pytest.mark.slurm
def test_srun_torchrun_c10d_equals_single_process(setup, single):
    """The multi-node form on one node: srun steps/train_chain.sh (README, Scaling out) as 2 tasks."""
    why = _cluster_problem()
    if why:
        pytest.skip(f"slurm: {why}")
    rc, text = srun_two_tasks(["steps/train_chain.sh", *train_args(setup, "srun")], ENV)
    assert rc == 0, text[-3000:]
    assert "Slurm task 1 of 2" in text and "rendezvous at" in text
    assert "2 rank(s)" in (setup / "srun" / "log" / "train.log").read_text()
    assert_same_training(single, setup / "srun" / "final.pt", 2, initial_model(setup))


def get_egs(root: Path, out: str, *opts: str) -> Path:
    r = subprocess.run(["steps/chain/get_egs.sh", "--num-utts-subset", "2", "--srand", "1", *opts,
                        *(str(root / d) for d in ("data", "ivectors", "chain", out))],
                       cwd=ROOT, env=ENV, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-3000:]
    return root / out


def align(root: Path, out: str, *opts: str) -> dict:
    r = subprocess.run(["steps/chain/align.sh", "--device", "cpu", *opts, str(root / "data"), str(root / "chain"),
                        str(root / "single" / "final.pt"), str(root / out)], cwd=ROOT, env=ENV,
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-3000:]
    return torch.load(root / out / "ali.pt", weights_only=True)


def test_get_egs_shards_train_as_in_memory(setup, single):
    """The egs of steps/chain/get_egs.sh: with one job they are the examples this process would make.
    Whole utterances (numerators compiled from the transcripts in the job) train the in-memory run's model
    bit for bit and give its alignment; chunks cut with that alignment give the in-memory chunk egs'
    minibatches, held-out sets included; with two jobs every training utterance is in one shard."""
    from ser.bin.train_chain import build_egs, parse_args
    from ser.train.egs_shards import EgsShard, shard_paths

    e2e = get_egs(setup, "egs_e2e", "--nj", "1", "--lang", str(setup / "lang"), "--net", "mini")
    got = run_train(setup, "e2e_egs", ENV, ["steps/train_chain.sh", "--egs-dir", str(e2e)])
    for name, w in single["model"].items():
        assert torch.equal(got["model"][name], w), name
    ali, ali_egs = align(setup, "ali", "--online-ivector-dir", str(setup / "ivectors")), align(setup, "ali_egs",
                                                                                              "--egs-dir", str(e2e))
    assert ali_egs["pdfs"].keys() == ali["pdfs"].keys()
    for u, p in ali_egs["pdfs"].items():
        assert torch.equal(p, ali["pdfs"][u]), u

    model = setup / "single" / "final.pt"
    chunk = ["--ali-dir", str(setup / "ali_egs"), "--model", str(model)]
    egs1, egs2 = (get_egs(setup, f"egs{nj}", "--nj", str(nj), *chunk) for nj in (1, 2))
    assert (egs2 / "log" / "get_egs.2.log").is_file() and len(shard_paths(egs2)) == 2
    parts = [EgsShard.load(p).fs.feats.keys for p in shard_paths(egs2)]
    train = (egs2 / "train_uttlist").read_text().split()
    assert sorted(parts[0] + parts[1]) == sorted(train) and not set(parts[0]) & set(parts[1])

    args = [a for a in train_args(setup, "x") if a != "e2e"]
    args.remove("--egs-type")
    args = [*args[:-4], "--egs-type", "chunk", "--ali", str(setup / "ali_egs" / "ali.pt"),
            "--num-chunk-per-minibatch", "4", *args[-4:]]
    net = TdnnfModel(TdnnfConfig.mini(ChainDir.load(setup / "chain").num_pdfs, ivector_dim=10))
    mem = build_egs(parse_args(args), net, 0, 1)
    sharded = build_egs(parse_args(["--egs-dir", str(egs1), *args]), net, 0, 1)
    for a, b in zip(mem, sharded, strict=True):
        for epoch in (0, 1):
            a.set_epoch(epoch), b.set_epoch(epoch)
            for x, y in zip(a, b, strict=True):
                assert x.keys == y.keys and torch.equal(x.feats, y.feats) and torch.equal(x.ivector, y.ivector)
                assert torch.equal(x.num_graphs.graph.logp, y.num_graphs.graph.logp)
