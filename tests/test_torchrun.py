"""The real launchers: ``NPROC=2 steps/train_chain.sh`` (torchrun, gloo on CPU) and, on a Slurm cluster,
``srun steps/train_chain.sh`` in a 2-task job (torchrun agents meeting at a c10d rendezvous) end with the
parameters of the single-process run of the same global minibatches (tests/test_ddp.py checks one update
in-process with torch.multiprocessing; here it is the programs, their egs sharding and their launch).

The data make the comparison exact up to float summation order: every utterance has the same features and
i-vector (the transcripts differ), so the BatchNorm statistics of any subset of a minibatch equal those of
the whole (each rank normalises with its own minibatch, as Kaldi's jobs do); 16 training utterances in
minibatches of 4 give every rank 2 sequences, 1 in each half of Kaldi's halved iteration-0 minibatch.
kaldi-sgd (linear in the gradient) keeps float rounding from being amplified as Adam's first steps do, and
so does a small learning rate: at the mini recipe's 1e-3 the 8 updates of this run amplify the ~1e-6 rounding
differences of the first gradient 5-10 times per update (measured: 1e-2 relative after 5 updates), at 1e-4 they
stay at the rounding level.  The check is not vacuous: every tensor the optimizer updates moves from its
initial value by far more than the tolerance.
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
         "--e2e-minibatch-size", "150=4", "--dropout-schedule", "0,0", "--srand", "1",
         "--initial-effective-lrate", "1e-4", "--final-effective-lrate", "1e-4"]
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


@pytest.fixture(scope="module")
def single(setup) -> dict:
    r = subprocess.run(["steps/train_chain.sh", *train_args(setup, "single")], cwd=ROOT, env=ENV,
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-3000:]
    final = torch.load(setup / "single" / "final.pt", weights_only=True)["model"]
    # the initial model of --srand 1 (ser.bin.train_chain); the LDA layer is estimated, not trained
    init = TdnnfModel(TdnnfConfig.mini(ChainDir.load(setup / "chain").num_pdfs, ivector_dim=10),
                      generator=torch.Generator().manual_seed(1)).state_dict()
    trained = [n for n, w in final.items() if w.is_floating_point() and ".stats_" not in n and ".lda." not in n]
    moved = [n for n in trained if (final[n] - init[n]).abs().max() > 10 * ATOL]
    assert len(trained) > 40 and len(moved) >= 0.9 * len(trained), sorted(set(trained) - set(moved))
    return final


ATOL, RTOL = 1e-6, 1e-5  # float32 rounding of the same sums in another order


def assert_same_training(single: dict, ddp_final: Path, world: int) -> None:
    """Parameters equal; stored BatchNorm statistics are the ranks' average: the single run's / world."""
    got = torch.load(ddp_final, weights_only=True)["model"]
    assert got.keys() == single.keys()
    for name, want in single.items():
        if name.rsplit(".", 1)[-1] in ("stats_count", "stats_sum", "stats_sumsq"):
            torch.testing.assert_close(got[name] * world, want, rtol=1e-4, atol=1e-3, msg=lambda m: f"{name}: {m}")
        elif want.is_floating_point():
            torch.testing.assert_close(got[name], want, rtol=RTOL, atol=ATOL, msg=lambda m: f"{name}: {m}")


def test_nproc_2_torchrun_equals_single_process(setup, single):
    r = subprocess.run(["steps/train_chain.sh", *train_args(setup, "nproc2")], cwd=ROOT,
                       env={**ENV, "NPROC": "2"}, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "2 rank(s)" in (setup / "nproc2" / "log" / "train.log").read_text()
    assert_same_training(single, setup / "nproc2" / "final.pt", 2)


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
    assert_same_training(single, setup / "srun" / "final.pt", 2)
