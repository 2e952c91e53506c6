"""Tests of ser.nnet: the tdnn_1g TDNN-F model, preconditioning, orthonormal constraint, dropout.

References are written independently here: a naive full-frame-rate forward built from
concatenated time shifts and matmuls, numpy versions of Kaldi's formulas, scipy's
generalized eigenproblem for the LDA, and a set-based "which frames does Kaldi compute"
analysis for the BatchNorm frame counts.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.linalg
import torch

from ser.nnet import (DropoutSchedule, GeneralDropout, KaldiBatchNorm, LdaStats, TdnnfConfig,
                      TdnnfModel, apply_orthonormal_constraint, constrain_orthonormal,
                      constrain_orthonormal_internal, estimate_preconditioning, pad_edges,
                      splice_input)

torch.set_num_threads(1)


# ------------------------------------------------------------------ parameter count, context

def _count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def _expected_params(cfg: TdnnfConfig) -> int:
    """Closed-form count from the xconfig expansion (reference §1.4)."""
    d_in = cfg.feat_dim * len(cfg.splice_offsets) + cfg.ivector_dim
    total = d_in * cfg.tdnn_dim + cfg.tdnn_dim
    prev = cfg.tdnn_dim
    for s in cfg.time_strides:
        k = 2 if s else 1
        total += k * prev * cfg.bottleneck_dim + k * cfg.bottleneck_dim * cfg.tdnnf_dim \
            + cfg.tdnnf_dim
        prev = cfg.tdnnf_dim
    total += prev * cfg.prefinal_l_dim
    prefinal = (cfg.prefinal_l_dim * cfg.prefinal_big_dim + cfg.prefinal_big_dim
                + cfg.prefinal_big_dim * cfg.prefinal_small_dim)
    out = cfg.prefinal_small_dim * cfg.num_pdfs + cfg.num_pdfs
    return total + 2 * prefinal + 2 * out


def test_paper_parameter_count_and_context():
    model = TdnnfModel(TdnnfConfig.tdnn_1g(num_pdfs=3600))
    assert _count(model) == 9_431_072
    assert _expected_params(model.config) == 9_431_072
    assert model.left_context == 28 and model.right_context == 28
    assert model.subsample_layer == "tdnnf4"
    # BatchNorm and lda hold no trainable parameters
    assert all(not list(bn.parameters()) for bn in model.batchnorms())
    assert not list(model.layers["lda"].parameters())


def test_mini_config_same_class():
    cfg = TdnnfConfig.mini(num_pdfs=50)
    model = TdnnfModel(cfg)
    assert _count(model) == _expected_params(cfg)
    assert model.left_context == 28 and model.right_context == 28
    assert [n for n in model.layer_names if n.startswith("tdnnf")] == \
        [f"tdnnf{i}" for i in range(2, 14)]
    # a config with different strides derives a different context
    other = TdnnfModel(TdnnfConfig.mini(num_pdfs=5, time_strides=(1, 2, 0, 3)))
    assert (other.left_context, other.right_context) == (1 + 1 + 2 + 0 + 3, 7)


@pytest.mark.parametrize("chunk,frames", [(150, 50), (111, 37), (102, 34), (100, 34), (1, 1)])
def test_output_frame_counts(chunk, frames):
    torch.manual_seed(0)
    model = TdnnfModel(TdnnfConfig.mini(num_pdfs=7, tdnn_dim=16, tdnnf_dim=16, bottleneck_dim=4,
                                        prefinal_big_dim=16, prefinal_small_dim=8,
                                        prefinal_l_dim=8, ivector_dim=5))
    x = torch.randn(2, chunk + 56, 40)
    out = model(x, torch.randn(2, 5))
    assert out["output"].shape == (2, frames, 7)
    assert out["output-xent"].shape == (2, frames, 7)
    assert model.num_output_frames(chunk + 56) == frames


def test_too_short_and_bad_inputs():
    model = TdnnfModel(TdnnfConfig.mini(num_pdfs=3, ivector_dim=5))
    with pytest.raises(ValueError, match="at least 57"):
        model(torch.randn(1, 56, 40), torch.randn(1, 5))
    with pytest.raises(ValueError, match="i-vector"):
        model(torch.randn(1, 60, 40), torch.randn(1, 4))
    with pytest.raises(ValueError, match=r"\[B, T, 40\]"):
        model(torch.randn(1, 60, 13), torch.randn(1, 5))
    with pytest.raises(ValueError, match="unknown layer"):
        model.embed(torch.randn(1, 60, 40), torch.randn(1, 5), upto="tdnnf14")


# ------------------------------------------------------------------ naive full-rate reference

def _bn_eval(h: torch.Tensor, bn: KaldiBatchNorm) -> torch.Tensor:
    mean = bn.stats_sum / bn.stats_count
    var = bn.stats_sumsq / bn.stats_count - mean * mean
    return (h - mean) / torch.sqrt(var + 1e-3)


def _reference_forward(model: TdnnfModel, x: torch.Tensor, iv: torch.Tensor
                       ) -> dict[str, torch.Tensor]:
    """All frames with full context, [B, T, D] matmuls, eval-mode BatchNorm; no subsampling."""
    cfg = model.config
    L = model.layers
    offs = cfg.splice_offsets
    lo, hi = min(offs), max(offs)
    T = x.shape[1]
    n_out = T - (hi - lo)
    pieces = [x[:, o - lo:o - lo + n_out] for o in offs]
    if iv.dim() == 2:
        pieces.append(iv[:, None, :].expand(-1, n_out, -1))
    else:
        pieces.append(iv[:, -lo:-lo + n_out])
    spliced = torch.cat(pieces, dim=-1)
    h = spliced @ L["lda"].weight.T + L["lda"].bias
    a = L["tdnn1"].affine
    h = _bn_eval(torch.relu(h @ a.weight[:, :, 0].T + a.bias), L["tdnn1"].batchnorm)
    res = {"tdnn1": h}
    for i, s in enumerate(cfg.time_strides):
        lay = L[f"tdnnf{i + 2}"]
        wl, wa, ba = lay.linear.weight, lay.affine.weight, lay.affine.bias
        if s == 0:
            lin = h @ wl[:, :, 0].T
            aff = lin @ wa[:, :, 0].T + ba
            skip = h
        else:
            lin = h[:, :-s] @ wl[:, :, 0].T + h[:, s:] @ wl[:, :, 1].T   # times t: h[t-s], h[t]
            aff = lin[:, :-s] @ wa[:, :, 0].T + lin[:, s:] @ wa[:, :, 1].T + ba  # lin[t], lin[t+s]
            skip = h[:, s:h.shape[1] - s]
        h = 0.66 * skip + _bn_eval(torch.relu(aff), lay.batchnorm)
        res[f"tdnnf{i + 2}"] = h
    h = h @ L["prefinal-l"].linear.weight[:, :, 0].T
    res["prefinal-l"] = h
    for pre, out in (("prefinal-chain", "output"), ("prefinal-xent", "output-xent")):
        p = L[pre]
        g = _bn_eval(torch.relu(h @ p.affine.weight[:, :, 0].T + p.affine.bias), p.batchnorm1)
        g = _bn_eval(g @ p.linear.weight[:, :, 0].T, p.batchnorm2)
        res[pre] = g
        o = g @ L[out].affine.weight[:, :, 0].T + L[out].affine.bias
        res[out] = torch.log_softmax(o, dim=-1) if out == "output-xent" else o
    return res


def _small_cfg(**kw) -> TdnnfConfig:
    base = dict(num_pdfs=11, ivector_dim=6, tdnn_dim=24, tdnnf_dim=24, bottleneck_dim=8,
                prefinal_l_dim=12, prefinal_big_dim=20, prefinal_small_dim=10)
    base.update(kw)
    return TdnnfConfig.mini(**base)


def _trained_model(cfg: TdnnfConfig, seed: int = 0) -> TdnnfModel:
    """A float64 model with random (non-zero) outputs, a random lda and BatchNorm stats
    accumulated by a few training-mode minibatches with dropout on."""
    torch.manual_seed(seed)
    model = TdnnfModel(cfg).double()
    with torch.no_grad():
        for name in ("output", "output-xent"):
            model.layers[name].affine.weight.normal_(0, 0.3)
            model.layers[name].affine.bias.normal_(0, 0.3)
        d = model.layers["lda"].input_dim
        model.set_preconditioning(torch.eye(d, dtype=torch.float64)
                                  + 0.1 * torch.randn(d, d, dtype=torch.float64),
                                  0.1 * torch.randn(d, dtype=torch.float64))
    model.train()
    model.set_dropout(0.3)
    ctx = model.left_context + model.right_context
    for _ in range(3):
        x = torch.randn(3, 30 + ctx, cfg.feat_dim, dtype=torch.float64)
        model(x, torch.randn(3, cfg.ivector_dim, dtype=torch.float64))
        model.scale_batchnorm_stats(0.8)
    model.eval()
    return model


@pytest.mark.parametrize("cfg_kw,chunk", [
    ({}, 30), ({}, 25),
    ({"time_strides": (1, 2, 0, 3, 3, 6)}, 18),          # generic plan: subsample after stride 2
    ({"frame_subsampling_factor": 1}, 9),
    ({"frame_subsampling_factor": 2, "time_strides": (1, 2, 0, 4, 2)}, 11),
])
def test_subsampled_forward_equals_full_rate_reference(cfg_kw, chunk):
    cfg = _small_cfg(**cfg_kw)
    model = _trained_model(cfg)
    fsf = cfg.frame_subsampling_factor
    ctx = model.left_context + model.right_context
    x = torch.randn(2, chunk + ctx, cfg.feat_dim, dtype=torch.float64)
    iv = torch.randn(2, cfg.ivector_dim, dtype=torch.float64)
    names = ("tdnn1", "tdnnf3", "tdnnf5", "prefinal-l", "prefinal-chain", "prefinal-xent")
    names = tuple(n for n in names if n in model.layer_names)
    with torch.no_grad():
        got = model(x, iv, return_layers=names)
        ref = _reference_forward(model, x, iv)
    n = math.ceil(chunk / fsf)
    for name in ("output", "output-xent") + names:
        r = ref[name]
        # reference frame j of a layer output is time j - (its remaining left context)
        start = model.left_context - model.layer_context(name)[0]
        r = r[:, start:start + fsf * (n - 1) + 1:fsf]
        assert got[name].shape == r.shape, name
        torch.testing.assert_close(got[name], r, rtol=1e-5, atol=1e-5, msg=name)
    # the outputs are not trivially equal (non-zero, varying over time)
    assert got["output"].std(dim=1).min() > 1e-3


def test_per_frame_ivector_matches_reference():
    cfg = _small_cfg()
    model = _trained_model(cfg, seed=3)
    x = torch.randn(2, 21 + 56, cfg.feat_dim, dtype=torch.float64)
    iv = torch.randn(2, 21 + 56, cfg.ivector_dim, dtype=torch.float64)
    with torch.no_grad():
        got = model(x, iv)["output"]
        ref = _reference_forward(model, x, iv)["output"][:, ::3]
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-5)


def _kaldi_needed_frames(cfg: TdnnfConfig, n: int) -> dict[str, int]:
    """Number of frames at which Kaldi computes each BatchNorm: walk back from the output
    times {0, fsf, ...} through the time offsets, as nnet3's compiler does."""
    fsf = cfg.frame_subsampling_factor
    need = set(range(0, fsf * n, fsf))
    counts = {"prefinal": len(need)}
    for i in reversed(range(len(cfg.time_strides))):
        s = cfg.time_strides[i]
        counts[f"tdnnf{i + 2}"] = len(need)          # affine/relu/batchnorm at output times
        lin = need | {t + s for t in need}
        need = {t - s for t in lin} | lin | need      # linear inputs + bypass
    counts["tdnn1"] = len(need)
    return counts


def test_batchnorm_sees_exactly_kaldis_frames_in_training():
    cfg = _small_cfg()
    model = TdnnfModel(cfg)
    model.train()
    b, chunk = 2, 150
    model(torch.randn(b, chunk + 56, cfg.feat_dim), torch.randn(b, cfg.ivector_dim))
    expect = _kaldi_needed_frames(cfg, 50)
    assert expect["tdnn1"] == chunk + 52 and expect["tdnnf4"] == chunk // 3 + 16
    L = model.layers
    assert float(L["tdnn1"].batchnorm.stats_count) == b * expect["tdnn1"]
    for i in range(2, 14):
        assert float(L[f"tdnnf{i}"].batchnorm.stats_count) == b * expect[f"tdnnf{i}"], i
    for pre in ("prefinal-chain", "prefinal-xent"):
        assert float(L[pre].batchnorm1.stats_count) == b * expect["prefinal"]
        assert float(L[pre].batchnorm2.stats_count) == b * expect["prefinal"]


# ------------------------------------------------------------------ outputs, layers, groups

def test_zero_init_outputs_and_layer_addressing():
    torch.manual_seed(1)
    model = TdnnfModel(TdnnfConfig.tdnn_1g(num_pdfs=3600))
    model.eval()
    x, iv = torch.randn(1, 30 + 56, 40), torch.randn(1, 100)
    with torch.no_grad():
        out = model(x, iv, return_layers=("tdnnf12", "tdnnf13", "prefinal-l"))
        emb = model.embed(x, iv, upto="tdnnf12")
        pre = model.layer_output(x, iv, "prefinal-chain")
    assert torch.count_nonzero(out["output"]) == 0
    torch.testing.assert_close(out["output-xent"],
                               torch.full((1, 10, 3600), -math.log(3600.0)))
    assert out["tdnnf12"].shape == (1, 10, 1024) and out["tdnnf12"].std() > 0.1
    assert out["tdnnf13"].shape == (1, 10, 1024)
    assert out["prefinal-l"].shape == (1, 10, 256)
    assert pre.shape == (1, 10, 256)
    torch.testing.assert_close(emb, out["tdnnf12"])
    assert emb.is_contiguous()
    assert model.layer_dim("tdnnf12") == 1024
    assert model.layer_context("tdnnf12") == (25, 25)


def test_component_groups_and_learning_rate_factor():
    model = TdnnfModel(TdnnfConfig.mini(num_pdfs=9))
    groups = {g["name"]: g for g in model.component_groups()}
    assert groups["output-xent.affine"]["learning_rate_factor"] == 5.0
    assert model.layers["output-xent"].learning_rate_factor == 5.0
    assert groups["output.affine"]["learning_rate_factor"] == 1.0
    assert groups["output.affine"]["l2_regularize"] == 0.002
    assert groups["output.affine"]["max_change"] == 1.5
    assert groups["tdnnf7.linear"]["l2_regularize"] == 0.008
    assert groups["tdnnf7.linear"]["orthonormal_constraint"] == -1.0
    assert groups["tdnnf7.affine"]["orthonormal_constraint"] == 0.0
    assert sum(p.numel() for g in groups.values() for p in g["params"]) == _count(model)
    # Kaldi init: output layers zero, TDNN-F linear stddev 1/sqrt(in*2), biases N(0,1)
    assert torch.count_nonzero(model.layers["output"].affine.weight) == 0
    torch.manual_seed(0)
    big = TdnnfModel(TdnnfConfig.tdnn_1g())
    w = big.layers["tdnnf7"].linear.weight.detach()
    assert abs(float(w.std()) - 1 / math.sqrt(2048)) < 0.02 / math.sqrt(2048)
    assert abs(float(big.layers["tdnnf7"].affine.bias.detach().std()) - 1.0) < 0.1
    assert abs(float(big.layers["tdnn1"].affine.weight.detach().std()) - 1 / math.sqrt(220)) < 1e-3


def test_training_backward_runs_and_pad_edges():
    cfg = _small_cfg()
    model = TdnnfModel(cfg)
    model.train()
    model.set_dropout(0.5)
    out = model(torch.randn(2, 33 + 56, cfg.feat_dim), torch.randn(2, cfg.ivector_dim))
    (out["output"].sum() + out["output-xent"].sum()).backward()
    assert model.layers["tdnn1"].affine.weight.grad is not None
    x = torch.arange(6.0).reshape(1, 3, 2)
    p = pad_edges(x, 2, 1)
    assert p.shape == (1, 6, 2)
    assert torch.equal(p[0, :3], x[0, :1].expand(3, 2)) and torch.equal(p[0, -2:], x[0, -1:].expand(2, 2))


# ------------------------------------------------------------------ BatchNorm

def test_batchnorm_train_eval_and_decayed_stats():
    torch.manual_seed(0)
    bn = KaldiBatchNorm(5).double()
    rng = np.random.default_rng(0)
    x1 = rng.normal(2.0, 3.0, size=(4, 5, 7))
    x2 = rng.normal(-1.0, 0.5, size=(3, 5, 9))
    bn.train()
    y1 = bn(torch.from_numpy(x1)).numpy()
    flat1 = x1.transpose(0, 2, 1).reshape(-1, 5)
    ref1 = (x1 - flat1.mean(0)[None, :, None]) / np.sqrt(flat1.var(0) + 1e-3)[None, :, None]
    np.testing.assert_allclose(y1, ref1, rtol=1e-10, atol=1e-10)
    bn.scale_stats(0.8)
    bn(torch.from_numpy(x2))
    flat2 = x2.transpose(0, 2, 1).reshape(-1, 5)
    count = 0.8 * len(flat1) + len(flat2)
    s = 0.8 * flat1.sum(0) + flat2.sum(0)
    ss = 0.8 * (flat1 ** 2).sum(0) + (flat2 ** 2).sum(0)
    assert float(bn.stats_count) == pytest.approx(count)
    np.testing.assert_allclose(bn.stats_sum.numpy(), s, rtol=1e-10)
    np.testing.assert_allclose(bn.stats_sumsq.numpy(), ss, rtol=1e-10)
    bn.eval()
    x3 = rng.normal(size=(2, 5, 4))
    y3 = bn(torch.from_numpy(x3)).numpy()
    mean, var = s / count, ss / count - (s / count) ** 2
    np.testing.assert_allclose(y3, (x3 - mean[None, :, None]) / np.sqrt(var + 1e-3)[None, :, None],
                               rtol=1e-10, atol=1e-10)
    assert float(bn.stats_count) == pytest.approx(count)   # eval does not accumulate
    bn.scale_stats(0.0)
    assert float(bn.stats_count) == 0.0
    # target-rms scales the output
    bn2 = KaldiBatchNorm(5, target_rms=2.0).double().train()
    torch.testing.assert_close(bn2(torch.from_numpy(x1)), 2 * torch.from_numpy(ref1))


def test_batchnorm_synced_over_one_rank_equals_unsynced(tmp_path):
    """``sync_ranks`` (the emotion trainer under DDP; 2 ranks in tests/test_torchrun_ser.py) in a
    1-rank gloo group: output, input gradient, stored stats and target-rms as without it."""
    import torch.distributed as dist

    rng = np.random.default_rng(1)
    x = torch.from_numpy(rng.normal(2.0, 3.0, size=(4, 5, 7)))
    w = torch.from_numpy(rng.normal(size=(4, 5, 7)))
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'rdzv'}", rank=0, world_size=1)
    try:
        out = []
        for sync in (False, True):
            bn = KaldiBatchNorm(5, target_rms=2.0).double().train()
            bn.sync_ranks = sync
            xi = x.clone().requires_grad_(True)
            y = bn(xi)
            (y * w).sum().backward()
            out.append((y.detach(), xi.grad, bn.stats_count, bn.stats_sum, bn.stats_sumsq))
    finally:
        dist.destroy_process_group()
    for a, b in zip(*out):
        torch.testing.assert_close(b, a, rtol=1e-10, atol=1e-10)


def test_model_scale_batchnorm_stats():
    model = TdnnfModel(_small_cfg())
    model.train()
    model(torch.randn(1, 60, 40), torch.randn(1, 6))
    before = [float(bn.stats_count) for bn in model.batchnorms()]
    model.scale_batchnorm_stats(0.8)
    after = [float(bn.stats_count) for bn in model.batchnorms()]
    assert len(before) == 1 + 12 + 4
    assert all(a == pytest.approx(0.8 * b) and b > 0 for a, b in zip(after, before))
    model.half()                                   # stats stay float64 (no float16 overflow)
    assert all(bn.stats_sum.dtype == torch.float64 for bn in model.batchnorms())
    assert model.layers["tdnn1"].affine.weight.dtype == torch.float16
    state = model.state_dict()
    assert "layers.tdnnf7.batchnorm.stats_count" in state and "layers.lda.weight" in state


def _bn_inputs(model: TdnnfModel) -> tuple[dict[str, list[torch.Tensor]], list]:
    """Forward hooks recording the input of every BatchNorm (by Kaldi name)."""
    seen: dict[str, list[torch.Tensor]] = {bn.component_name: [] for bn in model.batchnorms()}
    hooks = [bn.register_forward_hook(lambda m, a, out: seen[m.component_name].append(a[0].detach()))
             for bn in model.batchnorms()]
    return seen, hooks


def _direct_mean_var(xs: list[torch.Tensor]) -> tuple[np.ndarray, np.ndarray, int]:
    """Per-channel mean and biased variance over every frame of [B, C, T] inputs (numpy, float64)."""
    flat = np.concatenate([x.double().numpy().transpose(0, 2, 1).reshape(-1, x.shape[1]) for x in xs])
    return flat.mean(0), flat.var(0), len(flat)


def test_recompute_batchnorm_stats_equal_a_direct_pass():
    """Kaldi's RecomputeStats: the stored stats become those of the given sequences alone (no decay,
    nothing of the earlier sums), accumulated in training mode with dropout off."""
    import copy

    model = _trained_model(_small_cfg())      # decayed stats, dropout 0.3
    ref = copy.deepcopy(model)
    ctx = model.left_context + model.right_context
    g = torch.Generator().manual_seed(5)
    batches = [(torch.randn(b, w + ctx, 40, generator=g, dtype=torch.float64),
                torch.randn(b, 6, generator=g, dtype=torch.float64)) for b, w in ((2, 21), (3, 27), (1, 33))]
    assert model.recompute_batchnorm_stats(iter(batches)) == 6
    assert not model.training and all(d.dropout_proportion == 0.3 for d in model.dropouts())
    seen, hooks = _bn_inputs(ref)             # the direct pass: training mode, dropout off
    ref.train()
    ref.set_dropout(0.0)
    with torch.no_grad():
        for x, iv in batches:
            ref(x, iv)
    for h in hooks:
        h.remove()
    for bn in model.batchnorms():
        mean, var, n = _direct_mean_var(seen[bn.component_name])
        assert float(bn.stats_count) == n
        got_mean, got_var = bn.stored_mean_var()
        np.testing.assert_allclose(got_mean.numpy(), mean, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(got_var.numpy(), var, rtol=1e-9, atol=1e-12)
    with pytest.raises(ValueError, match="no input"):
        model.recompute_batchnorm_stats(iter([]))


def _check_bf16_policy(device: str) -> None:
    """Under bf16 autocast the body's affine/linear components run in bfloat16, the BatchNorms and
    the two output layers in float32, and the BatchNorm statistics are those of their (float32)
    input computed in float64."""
    model = TdnnfModel(_small_cfg()).to(device).train()
    with torch.no_grad():
        for name in ("output", "output-xent"):
            model.layers[name].affine.weight.normal_(0, 0.3)
    ctx = model.left_context + model.right_context
    x = torch.randn(3, 30 + ctx, 40, device=device)
    iv = torch.randn(3, 6, device=device)
    seen, hooks = _bn_inputs(model)
    dtypes = {}
    hooks.append(model.layers["tdnn1"].affine.register_forward_hook(
        lambda m, a, out: dtypes.__setitem__("tdnn1.affine", out.dtype)))
    hooks.append(model.layers["tdnnf7"].batchnorm.register_forward_hook(
        lambda m, a, out: dtypes.__setitem__("tdnnf7.batchnorm", out.dtype)))
    with torch.autocast(device_type=device, dtype=torch.bfloat16):
        out = model(x, iv)
    for h in hooks:
        h.remove()
    assert dtypes == {"tdnn1.affine": torch.bfloat16, "tdnnf7.batchnorm": torch.float32}
    assert out["output"].dtype == out["output-xent"].dtype == torch.float32
    torch.testing.assert_close(out["output-xent"].exp().sum(-1), torch.ones(3, 10, device=device))
    for bn in model.batchnorms():
        mean, var, n = _direct_mean_var([t.cpu() for t in seen[bn.component_name]])
        got_mean, got_var = bn.stored_mean_var()
        assert float(bn.stats_count) == n
        np.testing.assert_allclose(got_mean.cpu().numpy(), mean, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(got_var.cpu().numpy(), var, rtol=1e-5, atol=1e-5)


def test_bf16_autocast_policy_cpu():
    _check_bf16_policy("cpu")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_bf16_autocast_policy_cuda():
    _check_bf16_policy("cuda")


# ------------------------------------------------------------------ dropout

def test_continuous_dropout_mask_shared_over_time():
    torch.manual_seed(0)
    d = GeneralDropout(64, 0.5)
    d.train()
    y = d(torch.ones(200, 64, 9))
    assert torch.equal(y, y[:, :, :1].expand_as(y))           # shared across t
    assert not torch.equal(y[0], y[1])                         # differs per sequence
    assert y.min() >= 0.0 and y.max() <= 2.0                   # U[0, 2] for p = 0.5
    assert abs(float(y[:, :, 0].mean()) - 1.0) < 0.02
    assert abs(float(y[:, :, 0].var()) - 4.0 / 12.0) < 0.02    # var of U[0,2]
    d.dropout_proportion = 0.1
    y = d(torch.ones(100, 64, 3))
    assert y.min() >= 0.8 - 1e-6 and y.max() <= 1.2 + 1e-6
    d.eval()
    x = torch.randn(2, 64, 5)
    assert torch.equal(d(x), x)
    nd = GeneralDropout(64, 0.25, continuous=False).train()
    m = nd(torch.ones(100, 64, 2))
    vals = m.unique().numpy()
    assert len(vals) == 2 and vals[0] == 0.0 and vals[1] == pytest.approx(1 / 0.75)
    assert abs(float((m == 0).float().mean()) - 0.25) < 0.05


def test_dropout_schedule_values():
    sched = DropoutSchedule.parse("0,0@0.20,0.5@0.50,0")
    got = [sched.value(f) for f in (0.0, 0.2, 0.35, 0.5, 0.75, 1.0)]
    assert got == pytest.approx([0.0, 0.0, 0.25, 0.5, 0.25, 0.0])
    assert sched.value(0.1) == 0.0
    mid = DropoutSchedule.parse("0.1,0.5,0.1")          # a point without @ is at 0.5
    assert mid.value(0.25) == pytest.approx(0.3)
    multi = DropoutSchedule.parse("tdnnf*=0,0.4 *=0,0.2")
    assert multi.proportions(1.0) == [("tdnnf*", 0.4), ("*", 0.2)]
    with pytest.raises(ValueError):
        DropoutSchedule.parse("0.5")
    with pytest.raises(ValueError):
        DropoutSchedule.parse("0,0.2@0.6,0.1@0.3,0")
    model = TdnnfModel(_small_cfg())
    assert model.set_dropout(0.25) == 13
    assert model.set_dropout(0.1, "tdnnf1*.dropout") == 4
    assert model.layers["tdnnf12"].dropout.dropout_proportion == 0.1
    assert model.layers["tdnn1"].dropout.dropout_proportion == 0.25


# ------------------------------------------------------------------ orthonormal constraint

def _numpy_update(m: np.ndarray) -> np.ndarray:
    """Povey et al. 2018 Sec. 2.2-2.3 floating-scale update, written from the formulas."""
    p = m @ m.T
    alpha2 = np.trace(p @ p) / np.trace(p)
    ratio = np.trace(p @ p) * p.shape[0] / np.trace(p) ** 2
    nu = 0.125 * (0.5 if ratio > 1.02 else 1.0) * (0.5 if ratio > 1.1 else 1.0)
    return m - 4 * nu / alpha2 * (p - alpha2 * np.eye(p.shape[0])) @ m


@pytest.mark.parametrize("spread", [0.05, 0.3, 1.0])
def test_orthonormal_single_step_matches_numpy(spread):
    rng = np.random.default_rng(1)
    u, _ = np.linalg.qr(rng.normal(size=(12, 12)))
    v, _ = np.linalg.qr(rng.normal(size=(40, 12)))
    s = 1.7 * (1 + spread * rng.uniform(-1, 1, size=12))     # ratio < 1.02, > 1.02, > 1.1
    m = (u * s) @ v.T
    got = constrain_orthonormal_internal(torch.from_numpy(m)).numpy()
    np.testing.assert_allclose(got, _numpy_update(m), rtol=1e-10, atol=1e-12)
    # rows > cols: Kaldi transposes
    got_t = constrain_orthonormal(torch.from_numpy(m.T.copy())).numpy()
    np.testing.assert_allclose(got_t, _numpy_update(m).T, rtol=1e-10, atol=1e-12)


def test_orthonormal_converges_to_scaled_semi_orthogonal():
    torch.manual_seed(0)
    m = torch.randn(32, 256, dtype=torch.float64) / 16.0
    for _ in range(60):
        m = constrain_orthonormal_internal(m)
    p = m @ m.T
    alpha2 = float(torch.trace(p)) / 32
    torch.testing.assert_close(p / alpha2, torch.eye(32, dtype=torch.float64), atol=1e-8,
                               rtol=0)
    # fixed scale 0.5 (Kaldi: it diverges when started far away, so start nearby)
    q, _ = torch.linalg.qr(torch.randn(30, 8, dtype=torch.float64))
    fixed = 0.5 * q.T + 0.02 * torch.randn(8, 30, dtype=torch.float64)
    for _ in range(60):
        fixed = constrain_orthonormal_internal(fixed, scale=0.5)
    torch.testing.assert_close(fixed @ fixed.T, 0.25 * torch.eye(8, dtype=torch.float64),
                               atol=1e-8, rtol=0)


def test_apply_orthonormal_constraint_on_model():
    model = TdnnfModel(_small_cfg())
    names_all = apply_orthonormal_constraint(model, torch.Generator().manual_seed(0),
                                             probability_inverse=1)
    expected = ([f"layers.tdnnf{i}.linear" for i in range(2, 14)] + ["layers.prefinal-l.linear",
                "layers.prefinal-chain.linear", "layers.prefinal-xent.linear"])
    assert names_all == expected
    before = model.layers["tdnnf3"].linear.weight.detach().clone()
    m = before.reshape(before.shape[0], -1).numpy().astype(np.float64)
    # one draw in [0, 4) per constrained component, in network order; updated iff draw == 0
    g = torch.Generator().manual_seed(123)
    g_ref = torch.Generator().manual_seed(123)
    total = 0
    for _ in range(40):
        got = apply_orthonormal_constraint(model, g)
        draws = [int(torch.randint(0, 4, (1,), generator=g_ref)) for _ in expected]
        assert got == [n for n, d in zip(expected, draws) if d == 0]
        total += len(got)
    assert 0.1 < total / (40 * len(expected)) < 0.4      # about 1 in 4
    # one step on tdnnf3.linear ([8, 24 * 2] matrix) equals the numpy formula
    model2 = TdnnfModel(_small_cfg())
    with torch.no_grad():
        model2.layers["tdnnf3"].linear.weight.copy_(before)
    apply_orthonormal_constraint(model2, None, probability_inverse=1)
    after = model2.layers["tdnnf3"].linear.weight.detach().reshape(before.shape[0], -1).numpy()
    np.testing.assert_allclose(after, _numpy_update(m), rtol=1e-4, atol=1e-6)


# ------------------------------------------------------------------ preconditioning

def _class_data(n_cls=30, per=80, dim=8, seed=0, scale=1.0):
    rng = np.random.default_rng(seed)
    mix = rng.normal(size=(dim, dim))
    means = rng.normal(size=(n_cls, dim)) * np.linspace(0.05, 2.0, dim)
    labels = np.repeat(np.arange(n_cls), per)
    x = (means[labels] + rng.normal(size=(n_cls * per, dim))) @ mix.T * scale + 3.0
    return x, labels


def _covs(x, labels):
    mu = x.mean(0)
    tot = np.cov(x.T, bias=True)
    b = np.zeros_like(tot)
    for c in np.unique(labels):
        mc = x[labels == c].mean(0)
        b += (labels == c).mean() * np.outer(mc - mu, mc - mu)
    return tot, b, tot - b


def test_preconditioning_lda_identities():
    x, lab = _class_data()
    tot, b, w = _covs(x, lab)
    d = scipy.linalg.eigh(b, w, eigvals_only=True)[::-1]     # generalized eigenvalues
    # conventional LDA (within-class-factor 1, no ceiling): A W A^T = I, A B A^T = diag(d)
    a, bias = estimate_preconditioning(torch.from_numpy(x), torch.from_numpy(lab),
                                       within_class_factor=1.0, max_singular_value=0.0)
    a = a.numpy()
    np.testing.assert_allclose(a @ w @ a.T, np.eye(8), atol=1e-8)
    np.testing.assert_allclose(a @ b @ a.T, np.diag(d), atol=1e-8)
    # defaults: total variance of output dim i = 0.001 + d_i, within = (0.001+d)/(1+d)
    a, bias = estimate_preconditioning(torch.from_numpy(x), torch.from_numpy(lab))
    a, bias = a.numpy(), bias.numpy()
    assert np.linalg.svd(a, compute_uv=False).max() < 5.0       # ceiling inactive here
    y = x @ a.T + bias
    np.testing.assert_allclose(y.mean(0), 0.0, atol=1e-9)
    np.testing.assert_allclose(np.cov(y.T, bias=True), np.diag(0.001 + d), atol=1e-8)
    np.testing.assert_allclose(a @ w @ a.T, np.diag((0.001 + d) / (1 + d)), atol=1e-8)


def test_preconditioning_singular_value_ceiling_and_batches():
    x, lab = _class_data(scale=0.01)                  # tiny features -> large singular values
    xt, lt = torch.from_numpy(x), torch.from_numpy(lab)
    raw, _ = estimate_preconditioning(xt, lt, max_singular_value=0.0)
    capped, bias = estimate_preconditioning(xt, lt)
    s_raw = np.linalg.svd(raw.numpy(), compute_uv=False)
    assert s_raw.max() > 5.0
    u, s, vt = np.linalg.svd(raw.numpy())
    np.testing.assert_allclose(capped.numpy(), (u * np.minimum(s, 5.0)) @ vt, atol=1e-8)
    assert np.linalg.svd(capped.numpy(), compute_uv=False).max() <= 5.0 + 1e-9
    np.testing.assert_allclose(bias.numpy(), -capped.numpy() @ x.mean(0), atol=1e-8)
    # accumulating in batches gives the same transform
    stats = LdaStats(8, 30)
    for i in range(0, len(x), 333):
        stats.accumulate(xt[i:i + 333], lt[i:i + 333])
    w2, b2 = stats.estimate()
    torch.testing.assert_close(w2, capped)
    torch.testing.assert_close(b2, bias)
    with pytest.raises(ValueError, match="labels"):
        stats.accumulate(xt[:3], torch.tensor([0, 1, 30]))


def test_preconditioning_fallback_without_labels():
    x, _ = _class_data(seed=2)
    a, bias = estimate_preconditioning(torch.from_numpy(x), None, max_singular_value=0.0)
    y = x @ a.numpy().T + bias.numpy()
    np.testing.assert_allclose(y.mean(0), 0.0, atol=1e-9)
    np.testing.assert_allclose(np.cov(y.T, bias=True), np.eye(8), atol=1e-8)
    capped, _ = estimate_preconditioning(torch.from_numpy(x), None)
    assert np.linalg.svd(a.numpy(), compute_uv=False).max() > 5.0
    assert np.linalg.svd(capped.numpy(), compute_uv=False).max() <= 5.0 + 1e-9


def test_lda_layer_equals_spliced_affine():
    cfg = _small_cfg()
    model = TdnnfModel(cfg).double()
    lda = model.layers["lda"]
    d = lda.input_dim
    w = torch.randn(d, d, dtype=torch.float64)
    b = torch.randn(d, dtype=torch.float64)
    kaldi_mat = torch.cat([w, b[:, None]], dim=1)             # Kaldi lda.mat layout
    lda.set_kaldi_matrix(kaldi_mat)
    x = torch.randn(2, 17, 40, dtype=torch.float64)
    iv = torch.randn(2, cfg.ivector_dim, dtype=torch.float64)
    spliced = splice_input(x, iv)
    assert spliced.shape == (2, 15, 120 + cfg.ivector_dim)
    torch.testing.assert_close(spliced[0, 4, 40:80], x[0, 5])     # Append(-1,0,1): t in middle
    torch.testing.assert_close(spliced[0, 4, :40], x[0, 4])
    got = lda(x.transpose(1, 2), iv).transpose(1, 2)
    torch.testing.assert_close(got, spliced @ w.T + b)
