"""Tests of the chain trainer (ser/train/chain_trainer.py) and its schedule (ser/train/schedule.py).

References are independent: Kaldi's schedule numbers of run_tdnn_1g.sh (108 iterations,
nj 3..12), the update formula of UpdateNnetWithMaxChange written out here in float64,
brute-force splicing for the preconditioning statistics, and an uninterrupted run for the
exact-resumption check.  Graphs are built with the real ser.chain tools from a tiny lexicon
(conftest.py's tiny chain setup).
"""

from __future__ import annotations

import copy
import math
import random
import re

import numpy as np
import pytest
import torch

from ser.chain.numerator import NumeratorGraphBatch, numerator_forward_backward
from ser.chain.supervision import make_supervision
from ser.nnet import TdnnfConfig, TdnnfModel
from ser.nnet.model_io import load_chain_model
from ser.train.chain_trainer import ChainTrainer, ChainTrainerConfig
from ser.train.minibatch import ChainMinibatch, split_minibatch, subset_minibatch
from ser.train.optimizer import KaldiAdam, KaldiSgd
from ser.train.schedule import KaldiSchedule

from conftest import TinyChain

SENTENCES = [["the", "cat", "sat"], ["a", "dog", "sat"], ["the", "dog"], ["a", "cat"],
             ["dog", "sat", "the", "cat"], ["hen", "sat"], ["the", "hen"]]


# ------------------------------------------------------------------------------------------
# the shared tiny chain setup (conftest.py), a tiny network, random features
# ------------------------------------------------------------------------------------------
class TinySetup:
    def __init__(self, chain: TinyChain) -> None:
        self.lang, self.pdf_map, self.den, self.norm = chain.lang, chain.pdf_map, chain.den, chain.norm
        self.den_graph = chain.den_graph
        self.num_pdfs = chain.num_pdfs

    def model_config(self) -> TdnnfConfig:
        return TdnnfConfig.mini(self.num_pdfs, feat_dim=40, ivector_dim=8, tdnn_dim=24,
                                tdnnf_dim=24, bottleneck_dim=8, prefinal_l_dim=12,
                                prefinal_big_dim=24, prefinal_small_dim=12, time_strides=(1, 0, 3))

    def minibatch(self, seed: int, batch: int, t_out: int, model: TdnnfModel,
                  sentences: list[list[str]] | None = None) -> ChainMinibatch:
        g = torch.Generator().manual_seed(seed)
        t_in = 3 * t_out + model.left_context + model.right_context
        graphs, keys = [], []
        r = random.Random(seed)
        for b in range(batch):
            words = sentences[b] if sentences is not None else r.choice([SENTENCES[i] for i in (1, 2, 3, 5, 6)])
            res = make_supervision(words, 3 * t_out, self.lang, self.pdf_map, self.norm)
            assert res.graph is not None, res.reason
            graphs.append(res.graph)
            keys.append(f"s{seed}-{b}")
        feats = torch.randn(batch, t_in, 40, generator=g)
        ivec = torch.randn(batch, 8, generator=g)
        return ChainMinibatch(feats, ivec, NumeratorGraphBatch.from_graphs(graphs),
                              torch.full((batch,), t_out, dtype=torch.long), keys)


class ListEgs:
    """A minimal EgsSource: fixed minibatches, shuffled per pass, resumable position."""

    def __init__(self, minibatches: list[ChainMinibatch], seed: int = 0) -> None:
        self.mbs = minibatches
        self.seed = seed
        self.epoch = 0
        self.pos = 0
        self.num_frames = sum(int(m.feats.shape[0] * m.feats.shape[1]) for m in minibatches)

    def _order(self) -> list[int]:
        order = list(range(len(self.mbs)))
        random.Random(self.seed * 1000 + self.epoch).shuffle(order)
        return order

    def __len__(self) -> int:
        return len(self.mbs)

    def set_epoch(self, epoch: int) -> None:
        self.epoch, self.pos = epoch, 0

    def __iter__(self):
        order = self._order()
        while self.pos < len(order):
            mb = self.mbs[order[self.pos]]
            self.pos += 1
            yield mb

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "pos": self.pos}

    def load_state_dict(self, d: dict) -> None:
        self.epoch, self.pos = int(d["epoch"]), int(d["pos"])


@pytest.fixture(scope="module")
def tiny(tiny_chain) -> TinySetup:
    return TinySetup(tiny_chain)


def new_model(tiny: TinySetup, seed: int = 0) -> TdnnfModel:
    return TdnnfModel(tiny.model_config(), generator=torch.Generator().manual_seed(seed))


# ------------------------------------------------------------------------------------------
# schedule
# ------------------------------------------------------------------------------------------
# run_tdnn_1g.sh's options (Kaldi's NG-SGD learning rates)
TDNN_1G = dict(num_epochs=6, frames_per_iter=5_000_000, frame_subsampling_factor=3, num_jobs_initial=3,
               num_jobs_final=12, initial_effective_lrate=0.00025, final_effective_lrate=0.000025,
               dropout_schedule="0,0@0.20,0.5@0.50,0")


def test_schedule_matches_kaldi_tdnn_1g_numbers():
    # 45 archives of 5M frames (run_tdnn_1g.sh: num-iters=108 nj=3..12)
    s = KaldiSchedule(frames_per_epoch=44 * 5_000_000 + 123, **TDNN_1G)
    assert s.num_archives == 45
    assert s.num_archives_to_process == 810
    assert s.num_iters == 108
    assert s.num_jobs_at_iter(0) == 3 and s.num_jobs_at_iter(107) == 12
    # independent re-statement of common.py's loop
    archives, lrates = 0, []
    for it in range(108):
        nj = int(0.5 + 3 + 9 * it / 108)
        assert s.archives_processed_at_iter(it) == archives
        assert s.num_jobs(archives / 810) == nj
        lr = 0.000025 if it == 107 else 0.00025 * math.exp(archives / 810 * math.log(0.1))
        lrates.append(lr)
        assert s.kaldi_effective_lrate_at_iter(it) == pytest.approx(lr, rel=1e-12)
        archives += nj
    assert archives == s.archives_processed_at_iter(108) and archives <= 810 + 12
    assert s.effective_lrate(0.0) == pytest.approx(0.00025)
    assert s.effective_lrate(1.0) == pytest.approx(0.000025)
    assert s.effective_lrate(0.5) == pytest.approx(0.00025 * math.sqrt(0.1))
    assert s.num_passes == pytest.approx(18.0)
    # dropout '0,0@0.20,0.5@0.50,0'
    assert s.dropout(0.1) == [("*", 0.0)]
    assert s.dropout(0.35)[0][1] == pytest.approx(0.25)
    assert s.dropout(0.5)[0][1] == pytest.approx(0.5)
    assert s.dropout(0.75)[0][1] == pytest.approx(0.25)
    with pytest.raises(ValueError):
        KaldiSchedule(frames_per_epoch=5_000_000, **(TDNN_1G | dict(num_jobs_initial=4, num_jobs_final=2)))


# ------------------------------------------------------------------------------------------
# the update rule
# ------------------------------------------------------------------------------------------
def _max_change_reference(params, deltas, groups, nj, mpc):
    """Kaldi's UpdateNnetWithMaxChange on the jobs' deltas, then 1/nj of it (float64)."""
    norms = [math.sqrt(sum(float((x.detach() ** 2).sum()) for x in d)) for d in deltas]
    scales = [min(1.0, g["max_change"] / n) if n > 0 else 1.0 for g, n in zip(groups, norms)]
    tot = math.sqrt(sum((s * n) ** 2 for s, n in zip(scales, norms)))
    gs = min(1.0, mpc / tot) if tot > 0 else 1.0
    return [[p.double() + gs * s * x / nj for p, x in zip(ps, d)] for ps, d, s in zip(params, deltas, scales)]


def reference_update(params, grads, groups, eta, nj, nseq, mpc):
    """UpdateNnetWithMaxChange on a Kaldi job's delta, then 1/nj of it (float64)."""
    deltas = []
    for ps, gs, g in zip(params, grads, groups):
        lr = nj * eta * g["learning_rate_factor"]
        d = [-lr * (gr.double() + 2 * g["l2_regularize"] * nseq / nj * p.double()) for p, gr in zip(ps, gs)]
        deltas.append(d)
    return _max_change_reference(params, deltas, groups, nj, mpc)


@pytest.mark.parametrize("grad_size,mpc", [(1e-3, 2.0), (50.0, 2.0), (5.0, 0.3)])
def test_kaldi_sgd_matches_reference(grad_size, mpc):
    g = torch.Generator().manual_seed(3)
    groups = []
    for k, (mc, lrf, l2) in enumerate([(0.75, 1.0, 0.008), (1.5, 5.0, 0.002), (0.75, 1.0, 0.0)]):
        ps = [torch.nn.Parameter(torch.randn(7, 5, generator=g)), torch.nn.Parameter(torch.randn(7, generator=g))]
        for p in ps:
            p.grad = torch.randn(p.shape, generator=g) * grad_size
        groups.append(dict(params=ps, name=f"c{k}", learning_rate_factor=lrf, l2_regularize=l2, max_change=mc))
    params = [[p.detach().clone() for p in gr["params"]] for gr in groups]
    grads = [[p.grad.clone() for p in gr["params"]] for gr in groups]
    meta = [{k: v for k, v in gr.items() if k != "params"} for gr in groups]
    opt = KaldiSgd(groups, max_param_change=mpc)
    stats = opt.step(effective_lrate=0.001, num_jobs=4, num_sequences=64)
    want = reference_update(params, grads, meta, 0.001, 4, 64, mpc)
    for gr, w in zip(groups, want):
        for p, wp in zip(gr["params"], w):
            torch.testing.assert_close(p.detach().double(), wp, rtol=1e-5, atol=1e-7)
    assert stats.applied
    if grad_size == 50.0:
        assert stats.num_limited == 3
    if grad_size == 1e-3:
        assert stats.num_limited == 0 and stats.global_scale == 1.0
    if mpc == 0.3:
        assert stats.global_scale < 1.0


def test_kaldi_sgd_skips_non_finite_update():
    p = torch.nn.Parameter(torch.ones(3))
    p.grad = torch.tensor([1.0, float("nan"), 0.0])
    opt = KaldiSgd([dict(params=[p], name="x", learning_rate_factor=1.0, l2_regularize=0.0, max_change=0.75)])
    assert not opt.step(effective_lrate=0.1, num_jobs=1, num_sequences=1).applied
    assert torch.equal(p.detach(), torch.ones(3))


def reference_adam(params, grads, groups, eta, nj, nseq, mpc, moments, t, b1=0.9, b2=0.999, eps=1e-8):
    """Adam (Kingma & Ba, Algorithm 1) with decoupled weight decay 2*l2*nseq/nj per unit lr, on a
    Kaldi job's delta (lr nj*eta*lrf), max-change as reference_update, float64.  ``moments``
    [[(m, v)]] are updated in place; ``t`` is the 1-based step."""
    deltas = []
    for ps, gs, g, ms in zip(params, grads, groups, moments):
        lr = nj * eta * g["learning_rate_factor"]
        d = []
        for k, (p, gr) in enumerate(zip(ps, gs)):
            m, v = ms[k]
            m = b1 * m + (1 - b1) * gr.double()
            v = b2 * v + (1 - b2) * gr.double() ** 2
            ms[k] = (m, v)
            mhat, vhat = m / (1 - b1 ** t), v / (1 - b2 ** t)
            d.append(-lr * (mhat / (vhat.sqrt() + eps) + 2 * g["l2_regularize"] * nseq / nj * p.double()))
        deltas.append(d)
    return _max_change_reference(params, deltas, groups, nj, mpc)


@pytest.mark.parametrize("eta,mpc", [(1e-3, 2.0), (0.05, 2.0), (0.02, 0.3)])
def test_kaldi_adam_matches_reference(eta, mpc):
    g = torch.Generator().manual_seed(5)
    groups = []
    for k, (mc, lrf, l2) in enumerate([(0.75, 1.0, 0.008), (1.5, 5.0, 0.002), (0.75, 1.0, 0.0)]):
        ps = [torch.nn.Parameter(torch.randn(7, 5, generator=g)), torch.nn.Parameter(torch.randn(7, generator=g))]
        groups.append(dict(params=ps, name=f"c{k}", learning_rate_factor=lrf, l2_regularize=l2, max_change=mc))
    meta = [{k: v for k, v in gr.items() if k != "params"} for gr in groups]
    moments = [[(torch.zeros(p.shape, dtype=torch.float64),) * 2 for p in gr["params"]] for gr in groups]
    opt = KaldiAdam(groups, max_param_change=mpc)
    for t in (1, 2, 3):  # the moments and the bias correction carry over between steps
        for gr in groups:
            for p in gr["params"]:
                p.grad = torch.randn(p.shape, generator=g) * 10.0 ** (t - 2)
        params = [[p.detach().clone() for p in gr["params"]] for gr in groups]
        grads = [[p.grad.clone() for p in gr["params"]] for gr in groups]
        stats = opt.step(effective_lrate=eta, num_jobs=4, num_sequences=64)
        want = reference_adam(params, grads, meta, eta, 4, 64, mpc, moments, t)
        for gr, w in zip(groups, want):
            for p, wp in zip(gr["params"], w):
                torch.testing.assert_close(p.detach().double(), wp, rtol=1e-5, atol=1e-7)
        assert stats.applied
        if eta == 1e-3:
            assert stats.num_limited == 0 and stats.global_scale == 1.0
        if eta == 0.05:
            assert stats.num_limited >= 1
        if mpc == 0.3:
            assert stats.global_scale < 1.0
    # the state round-trips through a weights_only save
    import io

    buf = io.BytesIO()
    torch.save(opt.state_dict(), buf)
    buf.seek(0)
    opt2 = KaldiAdam([dict(gr) for gr in groups], max_param_change=0.1)
    opt2.load_state_dict(torch.load(buf, weights_only=True))
    assert opt2.num_updates == 3 and opt2.max_param_change == mpc
    for gr in groups:
        for p in gr["params"]:
            assert torch.equal(opt2.state[p]["exp_avg_sq"], opt.state[p]["exp_avg_sq"])


def test_kaldi_adam_skips_non_finite_update():
    p = torch.nn.Parameter(torch.ones(3))
    opt = KaldiAdam([dict(params=[p], name="x", learning_rate_factor=1.0, l2_regularize=0.0, max_change=0.75)])
    p.grad = torch.tensor([1.0, float("nan"), 0.0])
    assert not opt.step(effective_lrate=0.1, num_jobs=1, num_sequences=1).applied
    assert torch.equal(p.detach(), torch.ones(3)) and opt.num_updates == 0 and not opt.state[p]
    p.grad = torch.tensor([1.0, -2.0, 0.0])
    assert opt.step(effective_lrate=0.1, num_jobs=1, num_sequences=1).applied
    # first Adam step: -lr * g / (|g| + eps)
    torch.testing.assert_close(p.detach(), torch.tensor([0.9, 1.1, 1.0]))


# ------------------------------------------------------------------------------------------
# minibatch splitting
# ------------------------------------------------------------------------------------------
def test_subset_minibatch_keeps_each_sequence_objective(tiny):
    model = new_model(tiny)
    mb = tiny.minibatch(5, 5, 12, model)
    y = torch.randn(5, 12, tiny.num_pdfs, generator=torch.Generator().manual_seed(1))
    full, _, ok = numerator_forward_backward(y, mb.num_graphs, False)
    assert ok
    for idx in ([3, 1], [0, 2, 4], [4]):
        sub = subset_minibatch(mb, idx)
        lp, _, ok = numerator_forward_backward(y[idx], sub.num_graphs, False)
        assert ok
        torch.testing.assert_close(lp, full[idx])
        assert torch.equal(sub.feats, mb.feats[idx]) and sub.keys == [mb.keys[i] for i in idx]
    halves = split_minibatch(mb)
    assert [h.batch_size for h in halves] == [3, 2]


# ------------------------------------------------------------------------------------------
# preconditioning
# ------------------------------------------------------------------------------------------
def test_preconditioning_statistics_brute_force(tiny, tmp_path, monkeypatch):
    from ser.nnet.preconditioning import LdaStats

    captured = []
    orig = LdaStats.estimate

    def spy(self, *a, **kw):
        captured.append(self)
        return orig(self, *a, **kw)

    monkeypatch.setattr(LdaStats, "estimate", spy)
    model = new_model(tiny)
    mbs = [tiny.minibatch(s, 4, 10, model) for s in range(3)]
    trainer = ChainTrainer(model, tiny.den_graph, ChainTrainerConfig(), tmp_path)
    n = trainer.estimate_preconditioning(mbs + mbs, max_minibatches=3)
    rows, labels = [], []
    left = model.left_context
    for mb in mbs:
        for b in range(mb.batch_size):
            one = subset_minibatch(mb, [b])
            _, post, ok = numerator_forward_backward(torch.zeros(1, 10, tiny.num_pdfs), one.num_graphs, True)
            for k in range(10):
                c = left + 3 * k
                f = mb.feats[b]
                rows.append(torch.cat([f[c - 1], f[c], f[c + 1], mb.ivector[b]]))
                labels.append(int(post[0, k].argmax()))
    assert n == len(rows) == 120
    ref = LdaStats(128, tiny.num_pdfs)
    ref.accumulate(torch.stack(rows), torch.tensor(labels))
    (got,) = captured
    assert torch.equal(got.zero_acc, ref.zero_acc)
    torch.testing.assert_close(got.first_acc, ref.first_acc)
    torch.testing.assert_close(got.total_second_acc, ref.total_second_acc)
    # the installed transform is the estimate from these statistics
    w, bias = orig(got)  # (the estimate itself is ill-conditioned with 120 frames in 128 dims)
    torch.testing.assert_close(model.layers["lda"].weight, w.float())
    torch.testing.assert_close(model.layers["lda"].bias, bias.float())
    assert not torch.equal(model.layers["lda"].weight, torch.eye(128))


# ------------------------------------------------------------------------------------------
# one step against a hand-written reference step
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("optimizer", ["kaldi-sgd", "adam"])
def test_train_step_equals_reference(tiny, tmp_path, optimizer):
    from ser.chain.objective import LFMMILoss
    from ser.nnet.orthonormal import apply_orthonormal_constraint

    model = new_model(tiny)
    ref = copy.deepcopy(model)
    mb = tiny.minibatch(11, 4, 10, model)
    lr0 = 0.01 if optimizer == "kaldi-sgd" else 1e-3
    cfg = ChainTrainerConfig(iter0_special=False, dropout_schedule=None, initial_effective_lrate=lr0,
                             final_effective_lrate=lr0 / 10, optimizer=optimizer, num_epochs=1, frames_per_iter=1000)
    trainer = ChainTrainer(model, tiny.den_graph, cfg, tmp_path)
    trainer.schedule = trainer.make_schedule(frames_per_epoch=1000)
    trainer.train_step(mb, fraction=0.25, iteration=1)
    # reference: autograd gradient of -(objf + 0.1 xent), then the Kaldi update by hand
    ref.train()
    out = ref(mb.feats, mb.ivector)
    loss_fn = LFMMILoss(tiny.den_graph, 0.1, 0.1, out_of_range_regularize=0.0)
    loss, _ = loss_fn(out["output"], mb.num_graphs, out["output-xent"])
    loss.backward()
    groups = ref.component_groups()
    mpc = 2.0
    if optimizer == "adam":  # Kaldi's xent rates x xent_regularize, max-change x 2 (written out by hand)
        for g in groups:
            if g["name"].startswith(("prefinal-xent.", "output-xent.")):
                g["learning_rate_factor"] *= 0.1
            g["max_change"] *= 2.0
        mpc = 4.0
    eta = lr0 * math.exp(0.25 * math.log(0.1))
    nj = trainer.schedule.num_jobs(0.25)
    params, grads = [g["params"] for g in groups], [[p.grad for p in g["params"]] for g in groups]
    if optimizer == "kaldi-sgd":
        want = reference_update(params, grads, groups, eta, nj, 4, mpc)
    else:
        moments = [[(torch.zeros(p.shape, dtype=torch.float64),) * 2 for p in g["params"]] for g in groups]
        want = reference_adam(params, grads, groups, eta, nj, 4, mpc, moments, 1)
    with torch.no_grad():
        for g, w in zip(groups, want):
            for p, wp in zip(g["params"], w):
                p.copy_(wp.float())
    ref.scale_batchnorm_stats(0.8)
    apply_orthonormal_constraint(ref, torch.Generator().manual_seed(cfg.seed + 1))
    for (name, a), b in zip(model.state_dict().items(), ref.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6, msg=name)
    # the output layer moved (zero init)
    assert float(model.layers["output"].affine.weight.detach().abs().max()) > 0


@pytest.mark.parametrize("optimizer", ["kaldi-sgd", "adam"])
def test_xent_branch_relative_rates_are_kaldis(tiny, tmp_path, optimizer):
    """With the xent gradient scaled by xent_regularize (as the loss does) and an otherwise constant
    gradient, the xent branch steps 0.5x (output-xent) and 0.1x (prefinal-xent) the chain branch's
    per-element step, under both optimizers (Kaldi: factor 5 = 0.5 / xent_regularize under NG-SGD)."""
    model = new_model(tiny)
    cfg = ChainTrainerConfig(optimizer=optimizer, max_param_change=0.0)
    trainer = ChainTrainer(model, tiny.den_graph, cfg, tmp_path)
    opt = trainer.optimizer
    for g in opt.param_groups:
        g["max_change"] = 0.0
    for step in range(3):
        steps = {}
        with torch.no_grad():
            for g in opt.param_groups:
                for p in g["params"]:
                    p.zero_()  # no l2 term
                    p.grad = torch.full_like(p, 0.1 * 0.3 if "xent" in g["name"] else 0.3)
        opt.step(effective_lrate=1e-3, num_jobs=1, num_sequences=1)
        for g in opt.param_groups:
            steps[g["name"]] = float(torch.cat([p.detach().abs().flatten() for p in g["params"]]).mean())
        assert steps["output-xent.affine"] / steps["output.affine"] == pytest.approx(0.5, rel=1e-4)
        for part in ("affine", "linear"):
            ratio = steps[f"prefinal-xent.{part}"] / steps[f"prefinal-chain.{part}"]
            assert ratio == pytest.approx(0.1, rel=1e-4)
        assert steps["tdnn1.affine"] == pytest.approx(steps["output.affine"], rel=1e-4)


# ------------------------------------------------------------------------------------------
# full runs: logs, curve, final model, exact resumption
# ------------------------------------------------------------------------------------------
def make_egs(tiny, model, n=4, seed=0):
    return ListEgs([tiny.minibatch(100 + s, 3, 8, model) for s in range(n)], seed=seed)


def run_cfg(**kw):
    base = dict(num_epochs=2.0, frames_per_iter=400, num_jobs_initial=1, num_jobs_final=2,
                initial_effective_lrate=0.004, final_effective_lrate=0.001,
                dropout_schedule="0.2,0.2@0.5,0.1", print_interval=2)
    base.update(kw)
    return ChainTrainerConfig(**base)


def params_of(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_training_run_writes_logs_curve_and_final_model(tiny, tmp_path):
    torch.set_num_threads(1)
    model = new_model(tiny)
    egs = make_egs(tiny, model)
    valid = [tiny.minibatch(900, 3, 8, model)]
    trainer = ChainTrainer(model, tiny.den_graph, run_cfg(initial_effective_lrate=0.02,
                                                          final_effective_lrate=0.01), tmp_path / "exp")
    last = trainer.train(egs, valid_egs=valid, train_diag_egs=egs.mbs[:2], lda_egs=egs.mbs)
    exp = tmp_path / "exp"
    hist = trainer.state.history
    assert trainer.state.step == trainer.state.total_steps == round(trainer.schedule.num_passes * 4)
    assert len(hist) == trainer.schedule.num_iters >= 2
    assert last["valid_objf"] == hist[-1]["valid_objf"]
    # the objective on the training subset improves
    assert hist[-1]["train_objf"] > hist[0]["train_objf"]
    log0 = (exp / "log" / "train.0.log").read_text()
    assert "Overall average objective function for 'output' is" in log0
    assert re.search(r"max-change: per-component limit active on \d+/\d+ updates, max-param-change on", log0)
    last_log = (exp / "log" / f"train.{len(hist) - 1}.log").read_text()
    # one pass of 4 minibatches of 3 at each of the 3 frame shifts
    assert "batchnorm stats recomputed over 36 training sequences" in last_log
    cp = [ln for ln in (exp / "log" / "compute_prob_valid.0.log").read_text().splitlines() if not ln.startswith("#")]
    assert cp[1].startswith("Overall log-probability for 'output' is ")
    assert cp[1].endswith(f"per frame, over {3 * 8} frames.")
    assert cp[0].startswith("Overall log-probability for 'output-xent' is ")
    assert (exp / "report" / "training_curve.png").read_bytes()[:4] == b"\x89PNG"
    assert len((exp / "report" / "progress.tsv").read_text().splitlines()) == len(hist) + 1
    # final.pt: weights_only, and the same network
    d = torch.load(exp / "final.pt", weights_only=True)
    assert d["num_pdfs"] == tiny.num_pdfs
    loaded = load_chain_model(exp / "final.pt").eval()
    model.eval()
    with torch.no_grad():
        a = model(valid[0].feats, valid[0].ivector)["output"]
        b = loaded(valid[0].feats, valid[0].ivector)["output"]
    torch.testing.assert_close(a, b)
    # a second call with resume finds the run finished and changes nothing
    before = params_of(model)
    ChainTrainer(model, tiny.den_graph, run_cfg(), exp).train(make_egs(tiny, model), resume=True)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


@pytest.mark.parametrize("optimizer", ["adam", "kaldi-sgd"])
def test_resume_is_exact(tiny, tmp_path, optimizer):
    torch.set_num_threads(1)
    cfg = run_cfg(num_epochs=1.0, optimizer=optimizer)
    # uninterrupted
    m1 = new_model(tiny)
    egs1 = make_egs(tiny, m1)
    t1 = ChainTrainer(m1, tiny.den_graph, cfg, tmp_path / "a")
    t1.train(egs1, valid_egs=egs1.mbs[:1], lda_egs=egs1.mbs, resume=False)
    # interrupted after 3 and after 5 minibatches (mid-pass), each time by a fresh trainer
    m2 = new_model(tiny)
    egs2 = make_egs(tiny, m2)
    ChainTrainer(m2, tiny.den_graph, cfg, tmp_path / "b").train(
        egs2, valid_egs=egs2.mbs[:1], lda_egs=egs2.mbs, resume=False, max_steps=3)
    ck = torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=True)
    assert ck["trainer"]["step"] == 3 and ck["egs"][0]["pos"] == 3
    if optimizer == "adam":  # the Adam moments are in the checkpoint
        assert ck["optimizer"]["num_updates"] == 5  # 3 sequences: halves of 2 + 1 on iteration 0, twice
        assert len(ck["optimizer"]["state"]) == sum(1 for _ in m2.parameters())
    torch.manual_seed(12345)  # disturb every RNG: the checkpoint must restore them
    np.random.seed(1)
    random.seed(2)
    for steps in (2, None):
        m3 = new_model(tiny, seed=99)  # different init: the checkpoint must overwrite it
        egs3 = make_egs(tiny, m3)
        ChainTrainer(m3, tiny.den_graph, cfg, tmp_path / "b").train(
            egs3, valid_egs=egs3.mbs[:1], lda_egs=egs3.mbs, resume=True, max_steps=steps)
    for (k, a), b in zip(m1.state_dict().items(), m3.state_dict().values()):
        assert torch.equal(a, b), k
    h1 = torch.load(tmp_path / "a" / "final.pt", weights_only=True)["history"]
    h3 = torch.load(tmp_path / "b" / "final.pt", weights_only=True)["history"]
    assert h1 == h3


def test_kill_between_last_checkpoint_and_final_model(tiny, tmp_path):
    """Killed after the last checkpoint, before final.pt was renamed into place (its .tmp left): the re-run
    found the training finished and wrote no final.pt.  It must write the same final.pt."""
    torch.set_num_threads(1)
    cfg = run_cfg(num_epochs=1.0)
    m1 = new_model(tiny)
    ChainTrainer(m1, tiny.den_graph, cfg, tmp_path).train(make_egs(tiny, m1), resume=False)
    want = torch.load(tmp_path / "final.pt", weights_only=True)
    (tmp_path / "final.pt").rename(tmp_path / "final.pt.tmp")
    m2 = new_model(tiny, seed=99)
    ChainTrainer(m2, tiny.den_graph, cfg, tmp_path).train(make_egs(tiny, m2), resume=True)
    got = torch.load(tmp_path / "final.pt", weights_only=True)
    assert got["history"] == want["history"] and not (tmp_path / "final.pt.tmp").exists()
    for k, v in want["model"].items():
        assert torch.equal(got["model"][k], v), k


@pytest.mark.parametrize("optimizer,cls", [("kaldi-sgd", KaldiSgd), ("adam", KaldiAdam)])
def test_iteration0_halves_the_minibatch(tiny, tmp_path, monkeypatch, optimizer, cls):
    model = new_model(tiny)
    cfg = ChainTrainerConfig(optimizer=optimizer, num_epochs=1, frames_per_iter=1000)
    trainer = ChainTrainer(model, tiny.den_graph, cfg, tmp_path)
    assert type(trainer.optimizer) is cls
    trainer.schedule = trainer.make_schedule(frames_per_epoch=1000)
    seen = []
    orig = cls.step

    def spy(self, *a, **kw):
        seen.append((kw["num_sequences"], kw["max_param_change"]))
        return orig(self, *a, **kw)

    monkeypatch.setattr(cls, "step", spy)
    mb = tiny.minibatch(3, 4, 8, model)
    trainer.train_step(mb, 0.0, 0)
    trainer.train_step(mb, 0.5, 1)
    mpc = 2.0 if optimizer == "kaldi-sgd" else 4.0  # Kaldi's max-param-change, x 2 under Adam
    assert seen[0] == (2, pytest.approx(mpc / math.sqrt(2))) and seen[1][0] == 2
    assert seen[2] == (4, mpc)
