"""Tests of ser.ivector against independent numpy re-derivations of Kaldi's semantics (tiny models)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from ser.io.compressed import compress
from ser.io.tables import ArkScpWriter, TableError, load_scp_matrices, read_scp
from ser.ivector.batched_cholesky import BlockLayout, spd_solve, spd_solve_blocks
from ser.ivector.diag_ubm import DiagGmm, GmmStats, UbmFeatures, accumulate, gselect_indices, mle_update
from ser.ivector.extractor import IvectorExtractor, train_ivector_extractor
from ser.ivector.features import OnlineCmvnOptions, SpliceOptions, online_cmn
from ser.io.torch_io import save_torch
from ser.ivector.online import OnlineIvectorExtractor, OnlineIvectorOptions, extract_ivectors_online
from ser.ivector.pca import get_pca_transform
from synthetic_ivector import make_synthetic_datadir

C, FEAT, D, RAW = 8, 6, 4, 5   # Gaussians, transformed dim, i-vector dim, raw feature dim


def _spd(rng, n, scale=1.0):
    a = rng.normal(size=(n, n))
    return a @ a.T / n * scale + np.eye(n) * 0.5


def _random_models(rng, C: int = C, D: int = D) -> tuple[IvectorExtractor, DiagGmm, UbmFeatures]:
    M = rng.normal(size=(C, FEAT, D)) * 0.5
    means = rng.normal(size=(C, FEAT)) * 2
    M[:, :, 0] = means / 100.0
    Sinv = np.stack([np.linalg.inv(_spd(rng, FEAT)) for _ in range(C)])
    w = rng.dirichlet(np.ones(C) * 5)
    ie = IvectorExtractor(torch.tensor(M), torch.tensor(Sinv), torch.tensor(w), 100.0)
    ubm = DiagGmm(torch.tensor(w), torch.tensor(means), torch.tensor(rng.uniform(0.5, 2.0, (C, FEAT))))
    mat = torch.tensor(rng.normal(size=(FEAT, RAW * 7 + 1)) * 0.3, dtype=torch.float32)
    gstats = torch.zeros(2, RAW + 1, dtype=torch.float64)
    gstats[0, :RAW] = torch.tensor(rng.normal(size=RAW) * 50)
    gstats[0, RAW] = 100.0
    return ie, ubm, UbmFeatures(mat, gstats, SpliceOptions(3, 3), OnlineCmvnOptions(cmn_window=15, speaker_frames=9,
                                                                                     global_frames=4))


# ---------------------------------------------------------------------------------------------
def test_ivector_posterior_matches_closed_form():
    rng = np.random.default_rng(0)
    ie, _, _ = _random_models(rng)
    gamma = rng.uniform(0, 5, (3, C))
    X = rng.normal(size=(3, C, FEAT)) * gamma[:, :, None]
    mean, var, _, _ = ie.posterior(torch.tensor(gamma), torch.tensor(X))
    M, Sinv = ie.M.numpy(), ie.Sigma_inv.numpy()
    m = 100.0 * M[:, :, 0]
    for b in range(3):
        prec = np.eye(D) + sum(gamma[b, c] * M[c].T @ Sinv[c] @ M[c] for c in range(C))
        lin = sum(M[c].T @ Sinv[c] @ (X[b, c] - gamma[b, c] * m[c]) for c in range(C))
        ref = np.linalg.solve(prec, lin)
        got = mean[b].numpy().copy()
        got[0] -= ie.prior_offset
        np.testing.assert_allclose(got, ref, rtol=1e-9, atol=1e-9)
        np.testing.assert_allclose(np.linalg.inv(var[b].numpy()), prec, rtol=1e-8, atol=1e-8)


# ---------------------------------------------------------------------------------------------
# independent per-frame reference of ivector-extract-online2 (Kaldi's loops, numpy float64)
def _ref_online(utts, spks, ie, ubm, ff: UbmFeatures, o: OnlineIvectorOptions):
    mat = ff.mat.double().numpy()
    g = ff.gstats.numpy()
    gmean = g[0, :RAW] / g[0, RAW]
    cw, sf, gf = ff.cmvn_opts.cmn_window, ff.cmvn_opts.speaker_frames, ff.cmvn_opts.global_frames
    w, mu, var = ubm.weights.numpy(), ubm.means.numpy(), ubm.vars.numpy()
    M, Sinv, off = ie.M.numpy(), ie.Sigma_inv.numpy(), ie.prior_offset
    D = ie.ivector_dim
    SiM = np.einsum("cfg,cgd->cfd", Sinv, M)
    U = np.einsum("cfd,cfe->cde", M, SiM)
    out = []
    prev = None
    for x, spk in zip(utts, spks):
        x = x.astype(np.float64)
        if spk != prev:
            prev, spk_sum, spk_cnt = spk, np.zeros(RAW), 0.0
            lin0, quad0, n0 = np.zeros(D), np.zeros((D, D)), 0.0
        T = len(x)
        cmn = np.zeros_like(x)
        for t in range(T):
            lo = max(0, t - cw + 1)
            s, c = x[lo:t + 1].sum(0), float(t + 1 - lo)
            if c < cw and spk_cnt > 0:
                k = min(cw - c, sf, spk_cnt)
                s, c = s + k * spk_sum / spk_cnt, c + k
            if c < cw:
                k = min(cw - c, gf)
                s, c = s + k * gmean, c + k
            cmn[t] = x[t] - s / c

        def spl(y):
            idx = np.clip(np.arange(T)[:, None] + np.arange(-3, 4)[None, :], 0, T - 1)
            return y[idx].reshape(T, -1) @ mat[:, :-1].T + mat[:, -1]
        yp, yx = spl(cmn), spl(x)
        lin, quad, n = lin0.copy(), quad0.copy(), n0
        rows = []
        for t in range(T):
            ll = np.log(w) - 0.5 * (np.log(2 * np.pi * var) + (yp[t] - mu) ** 2 / var).sum(1)
            top = np.argsort(-ll, kind="stable")[:o.num_gselect]
            p = np.exp(ll[top] - ll[top].max())
            p /= p.sum()
            keep = p >= o.min_post
            keep[0] = True
            top, p = top[keep], p[keep] / p[keep].sum() * o.posterior_scale
            for c, pc in zip(top, p):
                lin += pc * SiM[c].T @ yx[t]
                quad += pc * U[c]
                n += pc
            if t % o.ivector_period == 0:
                # max_count: the prior N(off·e_0, I) gets weight max(1, n / max_count)
                ps = max(1.0, n / o.max_count) if o.max_count > 0 else 1.0
                L = lin.copy()
                L[0] += off * ps
                wv = np.linalg.solve(ps * np.eye(D) + quad, L)
                wv[0] -= off
                rows.append(wv)
                snap = (lin.copy(), quad.copy(), n)   # Kaldi stops accumulating at the last row's frame
        out.append(np.array(rows))
        spk_sum, spk_cnt = spk_sum + x.sum(0), spk_cnt + T
        limit = o.max_remembered_frames * o.posterior_scale
        lin, quad, n = snap
        sc = limit / n if n > limit else 1.0
        lin0, quad0, n0 = lin * sc, quad * sc, n * sc
    return out


def _batch(utts, spks):
    from ser.ivector.features import UttBatch
    return UttBatch([f"u{i}" for i in range(len(utts))], list(spks),
                    torch.tensor(np.concatenate(utts), dtype=torch.float32),
                    torch.tensor([len(u) for u in utts]))


def online_inputs():
    """Random models and 7 utterances of 3 speakers, with options whose LimitFrames window is small."""
    rng = np.random.default_rng(1)
    ie, ubm, ff = _random_models(rng)
    lens = [1, 10, 11, 37, 25, 60, 9]
    spks = ["a", "a", "a", "a", "b", "b", "c"]
    utts = [rng.normal(size=(T, RAW)) * 2 + 1 for T in lens]
    opts = OnlineIvectorOptions(max_remembered_frames=30)   # small, so LimitFrames scaling is exercised
    return ie, ubm, ff, opts, utts, spks


@pytest.fixture(scope="module")
def online_setup():
    return online_inputs()


def test_online_rows_match_per_frame_reference(online_setup):
    ie, ubm, ff, opts, utts, spks = online_setup
    ex = OnlineIvectorExtractor(ie, ubm, ff, opts, "cpu")
    got = ex.extract(_batch(utts, spks))
    ref = _ref_online(utts, spks, ie, ubm, ff, opts)
    for u, (g, r) in enumerate(zip(got, ref)):
        assert g.shape == (math.ceil(len(utts[u]) / 10), D)
        np.testing.assert_allclose(g, r, rtol=2e-3, atol=2e-3, err_msg=f"utterance {u}")


def test_online_rows_match_reference_larger_ivector_dim():
    # i-vector dim 37 > the batched Cholesky's leaf size: exercises its recursive blocks; more Gaussians
    # than frames per row, so the per-row occupancy increments are sparse
    rng = np.random.default_rng(5)
    ie, ubm, ff = _random_models(rng, C=24, D=37)
    lens = [45, 80, 3, 52]
    spks = ["a", "a", "b", "b"]
    utts = [rng.normal(size=(T, RAW)) * 2 + 1 for T in lens]
    opts = OnlineIvectorOptions(max_remembered_frames=40, max_count=3.0)
    got = OnlineIvectorExtractor(ie, ubm, ff, opts, "cpu").extract(_batch(utts, spks))
    ref = _ref_online(utts, spks, ie, ubm, ff, opts)
    for u, (g, r) in enumerate(zip(got, ref)):
        assert g.shape == r.shape == (math.ceil(lens[u] / 10), 37)
        np.testing.assert_allclose(g, r, rtol=2e-3, atol=2e-3, err_msg=f"utterance {u}")


def test_spd_solve_matches_numpy():
    rng = np.random.default_rng(6)
    for n, leaf in ((1, 13), (5, 13), (14, 13), (37, 13), (100, 13), (29, 2)):
        a = rng.normal(size=(6, n, n + 3))
        A = a @ a.transpose(0, 2, 1) / (n + 3) + np.eye(n) * 0.1
        y = rng.normal(size=(6, n))
        x, ok = spd_solve(torch.tensor(A, dtype=torch.float32), torch.tensor(y, dtype=torch.float32), leaf)
        assert bool(ok.all())
        ref = np.linalg.solve(A, y[:, :, None])[:, :, 0]
        scale = np.abs(ref).max(1, keepdims=True)
        np.testing.assert_allclose(x.numpy() / scale, ref / scale, rtol=0, atol=2e-4, err_msg=f"n={n} leaf={leaf}")
        # the same systems stored in the block layout, the diagonal added in place
        lay = BlockLayout(n, leaf)
        flat = torch.tensor(A - 2 * np.eye(n), dtype=torch.float32).flatten(1)[:, lay.index]
        lay.add_diagonal_(flat, torch.full((6,), 2.0))
        xb, ok = spd_solve_blocks(lay.blocks(flat), torch.tensor(y, dtype=torch.float32))
        assert bool(ok.all())
        np.testing.assert_allclose(xb.numpy() / scale, ref / scale, rtol=0, atol=2e-4, err_msg=f"blocks n={n}")
    # float64 is exact to rounding, and a matrix that is not positive definite is reported
    A = torch.tensor(A)
    x, ok = spd_solve(A, torch.tensor(y), 4)
    np.testing.assert_allclose(x.numpy(), ref, rtol=1e-9, atol=1e-9)
    A[2, 20, 20] = -5.0
    _, ok = spd_solve(A, torch.tensor(y), 4)
    assert ok.tolist() == [True, True, False, True, True, True]


def test_block_layout_stores_the_blocks_the_factorisation_reads():
    for n, leaf in ((1, 13), (13, 13), (14, 13), (100, 13), (37, 5)):
        lay = BlockLayout(n, leaf)
        assert len(set(lay.index.tolist())) == lay.size             # each entry stored once
        full = torch.arange(n * n, dtype=torch.float32).reshape(1, n, n)
        upper = torch.triu(torch.ones(n, n, dtype=torch.bool))
        # every upper-triangle entry is stored; a lower one only inside a diagonal leaf
        assert upper.flatten()[lay.index].sum() == n * (n + 1) // 2
        ones = torch.zeros(1, lay.size)
        lay.add_diagonal_(ones, torch.ones(1))                      # exactly the diagonal, once each
        assert sorted(lay.index[ones[0] != 0].tolist()) == [k * (n + 1) for k in range(n)]
        assert float(ones.sum()) == n
        flat = full.flatten(1)[:, lay.index]
        for blk in _stored_blocks(lay.blocks(flat)):
            r0, c0 = int(blk[0, 0, 0]) // n, int(blk[0, 0, 0]) % n
            np.testing.assert_array_equal(blk[0].numpy(), full[0, r0:r0 + blk.shape[1], c0:c0 + blk.shape[2]].numpy())
            assert (r0 == c0 and blk.shape[1] == blk.shape[2]) or r0 + blk.shape[1] <= c0   # leaf, or above it
    with pytest.raises(ValueError, match="expected"):
        BlockLayout(10, 4).blocks(torch.zeros(2, 7))


def _stored_blocks(t):
    return [t] if isinstance(t, torch.Tensor) else [*_stored_blocks(t[0]), t[1], *_stored_blocks(t[2])]


def test_online_row_uses_frames_up_to_10i(online_setup):
    ie, ubm, ff, opts, utts, spks = online_setup
    ex = OnlineIvectorExtractor(ie, ubm, ff, opts, "cpu")
    base = ex.extract(_batch(utts, spks))
    u, i = 5, 2                        # utterance of 60 frames, row 2 ↔ frames 0..20
    mod = [x.copy() for x in utts]
    mod[u][10 * i + 4] += 5.0          # just outside frame 10i's ±3 splice window
    got = ex.extract(_batch(mod, spks))
    np.testing.assert_allclose(got[u][:i + 1], base[u][:i + 1], rtol=0, atol=1e-6)
    assert np.abs(got[u][i + 1] - base[u][i + 1]).max() > 1e-3
    mod2 = [x.copy() for x in utts]
    mod2[u][10 * i + 3] += 5.0         # inside the window of frame 10i → row i changes
    got2 = ex.extract(_batch(mod2, spks))
    np.testing.assert_allclose(got2[u][:i], base[u][:i], rtol=0, atol=1e-6)
    assert np.abs(got2[u][i] - base[u][i]).max() > 1e-3


def test_parallel_jobs_give_the_serial_rows_in_order(online_setup):
    ie, ubm, ff, opts, utts, spks = online_setup
    ex = OnlineIvectorExtractor(ie, ubm, ff, opts, "cpu")
    # one batch per speaker (whole speakers are independent), plus a small rows_per_chunk elsewhere
    groups = [[i for i, s in enumerate(spks) if s == k] for k in ("a", "b", "c")] * 3
    batches = [_batch([utts[i] for i in g], [spks[i] for i in g]) for g in groups]
    threads = torch.get_num_threads()
    serial = [ex.extract(b, rows_per_chunk=3) for b in batches]
    got = list(ex.extract_batches(iter(batches), nj=2))
    assert torch.get_num_threads() == threads
    assert [b for b, _ in got] == batches
    for (_, rows), ref in zip(got, serial):
        assert len(rows) == len(ref)
        for r, f in zip(rows, ref):
            np.testing.assert_allclose(r, f, rtol=0, atol=1e-5)


def test_online_speaker_carry_over(online_setup):
    ie, ubm, ff, opts, utts, spks = online_setup
    ex = OnlineIvectorExtractor(ie, ubm, ff, opts, "cpu")
    base = ex.extract(_batch(utts, spks))
    alone = ex.extract(_batch(utts[4:5], ["b"]))          # first utterance of b: no carry-in
    np.testing.assert_allclose(alone[0], base[4], atol=1e-5)
    alone2 = ex.extract(_batch(utts[5:6], ["b"]))         # second utterance of b without its history
    assert np.abs(alone2[0] - base[5]).max() > 1e-3
    # speakers are independent: changing speaker b's data leaves speaker c's rows untouched
    mod = [x.copy() for x in utts]
    mod[4] += 3.0
    mod[5] -= 1.0
    got = ex.extract(_batch(mod, spks))
    assert np.abs(got[5] - base[5]).max() > 1e-3
    np.testing.assert_allclose(got[6], base[6], rtol=0, atol=1e-6)


def _write_extractor_dir(exdir: Path, ie: IvectorExtractor, ubm: DiagGmm, ff: UbmFeatures) -> Path:
    exdir.mkdir()
    ie.save(exdir / "final.ie.pt")
    ubm.save(exdir / "final.dubm.pt")
    save_torch({"mat": ff.mat}, exdir / "final.mat.pt")
    save_torch({"stats": ff.gstats}, exdir / "global_cmvn.stats.pt")
    (exdir / "splice_opts").write_text(ff.splice_opts.to_conf())
    (exdir / "online_cmvn.conf").write_text(ff.cmvn_opts.to_conf())
    return exdir


def test_non_finite_frames_stay_in_their_utterance(online_setup):
    """A NaN or Inf frame reaches no other speaker's online CMN (a prefix sum over the whole batch carried
    it into every later utterance) and no earlier utterance."""
    _, _, ff, _, utts, spks = online_setup
    base = _batch(utts, spks).split(online_cmn(_batch(utts, spks), ff.gstats, ff.cmvn_opts, carry_speaker=True))
    mod = [x.copy() for x in utts]
    mod[1][2, 0] = np.inf   # speaker a
    mod[4][3, 1] = np.nan   # speaker b
    got = _batch(mod, spks).split(online_cmn(_batch(mod, spks), ff.gstats, ff.cmvn_opts, carry_speaker=True))
    for u in (0, 6):        # a's utterance before the Inf; speaker c
        torch.testing.assert_close(got[u], base[u], rtol=0, atol=1e-6)
    assert not torch.isfinite(got[4]).all()


def test_non_finite_features_are_an_error_naming_the_utterance(tmp_path: Path, online_setup):
    """ivector extraction used to return 0 with other speakers' i-vectors changed."""
    ie, ubm, ff, opts, _, _ = online_setup
    d = make_synthetic_datadir(tmp_path / "data", num_spk=2, utts_per_spk=3, dim=RAW, min_frames=5, max_frames=41)
    feats = {u: m.copy() for u, m in load_scp_matrices(d.path / "feats.scp").items()}
    feats["spk01-utt01"][4, 2] = np.nan
    with ArkScpWriter(d.path / "feats.ark", d.path / "feats.scp") as w:
        for u, m in feats.items():
            w.write(u, m)
    exdir = _write_extractor_dir(tmp_path / "ie", ie, ubm, ff)
    with pytest.raises(TableError, match=r"utterance spk01-utt01: .*feats\.ark:\d+: 1 non-finite values"):
        extract_ivectors_online(d.path, exdir, tmp_path / "iv", opts, device="cpu")
    assert not (tmp_path / "iv" / "ivector_online.scp").exists()


def test_online_rows_on_disk(tmp_path: Path, online_setup):
    ie, ubm, ff, opts, _, _ = online_setup
    d = make_synthetic_datadir(tmp_path / "data", num_spk=2, utts_per_spk=3, dim=RAW, min_frames=5, max_frames=41)
    exdir = _write_extractor_dir(tmp_path / "ie", ie, ubm, ff)
    extract_ivectors_online(d.path, exdir, tmp_path / "iv", opts, device="cpu")
    got = load_scp_matrices(tmp_path / "iv" / "ivector_online.scp")
    assert (tmp_path / "iv" / "ivector_period").read_text().strip() == "10"
    from ser.ivector.features import read_feats
    utts = [read_feats(d, u) for u in d.utts]
    ref = _ref_online(utts, [d.utt2spk[u] for u in d.utts], ie, ubm, ff, opts)
    for u, r in zip(d.utts, ref):
        assert got[u].shape == (math.ceil(len(read_feats(d, u)) / 10), D)
        np.testing.assert_allclose(got[u], r, rtol=2e-3, atol=2e-3)
    # --compress true (the script's default): the same i-vectors as Kaldi's compressed matrices
    extract_ivectors_online(d.path, exdir, tmp_path / "ivc", opts, device="cpu", compress=True)
    for u, rx in read_scp(tmp_path / "ivc" / "ivector_online.scp").items():
        ark, off = rx.rsplit(":", 1)
        body = compress(got[u])
        with open(ark, "rb") as f:
            f.seek(int(off))
            assert f.read(2 + len(body)) == b"\0B" + body, u
    for f in exdir.glob("*.pt"):
        assert isinstance(torch.load(f, weights_only=True), dict)


# ---------------------------------------------------------------------------------------------
def _np_restricted_loglike(gmm: DiagGmm, x: np.ndarray, sel: np.ndarray) -> float:
    w, mu, var = gmm.weights.numpy(), gmm.means.numpy(), gmm.vars.numpy()
    ll = np.log(w)[None] - 0.5 * (np.log(2 * np.pi * var)[None] + (x[:, None, :] - mu[None]) ** 2 / var[None]).sum(2)
    lls = np.take_along_axis(ll, sel, 1)
    m = lls.max(1)
    return float((m + np.log(np.exp(lls - m[:, None]).sum(1))).mean())


def test_ubm_em_increases_likelihood():
    rng = np.random.default_rng(2)
    x = np.concatenate([rng.normal(size=(400, 3)) * s + m for s, m in ((1, -3), (0.5, 2), (2, 0))])
    xt = torch.tensor(x, dtype=torch.float32)
    gen = torch.Generator().manual_seed(0)
    idx = torch.randperm(len(x), generator=gen)[:6]
    gmm = DiagGmm(torch.full((6,), 1 / 6, dtype=torch.float64), torch.tensor(x[idx.numpy()]),
                  torch.tensor(np.tile(x.var(0), (6, 1))))
    sel = gselect_indices(gmm, xt, 4)                       # gselect from the initial model, as Kaldi
    prev = _np_restricted_loglike(gmm, x, sel.numpy())
    for it in range(6):
        st = GmmStats.zeros(gmm.num_gauss, 3, torch.device("cpu"))
        accumulate(gmm, xt, st, sel)
        assert st.tot_like / st.num_frames == pytest.approx(prev, abs=1e-4)
        gmm = mle_update(gmm, st, min_gaussian_weight=1e-4, remove_low_count_gaussians=False)
        cur = _np_restricted_loglike(gmm, x, sel.numpy())
        assert cur > prev - 1e-9, f"iteration {it}: {cur} < {prev}"
        prev = cur
    assert gmm.weights.sum().item() == pytest.approx(1.0)


# ---------------------------------------------------------------------------------------------
def train_small(data: Path, root: Path, device: str):
    """PCA, UBM and extractor of the small sizes above, trained on ``data`` under ``root``:
    (UBM history, extractor, its auxf history)."""
    from ser.ivector.diag_ubm import train_diag_ubm
    get_pca_transform(data, root / "pca", dim=FEAT, device=device)
    _, ubm_hist = train_diag_ubm(data, C, root / "pca", root / "ubm", num_frames=4000, num_iters_init=6,
                                 device=device)
    ie, hist = train_ivector_extractor(data, root / "ubm", root / "ie", ivector_dim=D, num_iters=6,
                                       gaussian_min_count=1.0, variance_floor_factor=0.01, device=device)
    return ubm_hist, ie, hist


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("ivtrain")
    d = make_synthetic_datadir(root / "data", num_spk=5, utts_per_spk=4, dim=RAW, seed=3)
    ubm_hist, ie, hist = train_small(d.path, root, "cpu")
    return root, d, ubm_hist, ie, hist


def test_pca_whitens(trained):
    root, d, *_ = trained
    from ser.ivector.features import iter_speaker_batches, online_cmn, speaker_order, splice, subsample_mask
    ff = UbmFeatures.from_dir(root / "pca")
    mat = ff.mat.double().numpy()
    assert mat.shape == (FEAT, RAW * 7 + 1)
    ys = []
    for b in iter_speaker_batches(d, speaker_order(d), 10 ** 9, torch.device("cpu")):
        x = splice(b, online_cmn(b, ff.gstats, ff.cmvn_opts), ff.splice_opts)[subsample_mask(b, 2)]
        ys.append(x.double().numpy())
    x = np.concatenate(ys)
    y = x @ mat[:, :-1].T + mat[:, -1]
    np.testing.assert_allclose(y.mean(0), 0, atol=1e-4)
    np.testing.assert_allclose(np.cov(y.T, bias=True), np.eye(FEAT), atol=1e-4)
    # rows span the top eigenvectors of the covariance (numpy eigh, independently)
    ev, P = np.linalg.eigh(np.cov(x.T, bias=True))
    top = P[:, np.argsort(-ev)[:FEAT]]
    A = mat[:, :-1] / np.linalg.norm(mat[:, :-1], axis=1, keepdims=True)
    np.testing.assert_allclose(np.abs(np.sum(A * top.T, axis=1)), 1.0, atol=1e-4)


def test_ubm_training_passes_increase_likelihood(trained):
    _, _, ubm_hist, _, _ = trained
    p = ubm_hist["passes"]
    assert all(b > a for a, b in zip(p, p[1:])), p


def test_extractor_em_increases_auxf(trained):
    root, _, _, ie, hist = trained
    assert all(b > a - 1e-9 for a, b in zip(hist, hist[1:])), hist
    assert hist[-1] > hist[0] + 0.1
    loaded = IvectorExtractor.from_dict(torch.load(root / "ie" / "final.ie.pt", weights_only=True))
    torch.testing.assert_close(loaded.M, ie.M)
    assert loaded.prior_offset == pytest.approx(ie.prior_offset)
    assert not list((root / "ie").glob("[0-9]*.ie.pt"))




def test_utterance_ivectors_tell_speakers_apart(tmp_path):
    """Speaker verification on held-out synthetic speakers (what local/ivector_eer.sh measures): a
    small PCA + UBM + extractor trained on 12 other speakers; cosine scoring of per-utterance
    i-vectors is far better than chance, the same trials with shuffled speakers are at chance."""
    from ser.eval.speaker import cosine_eer
    from ser.ivector.diag_ubm import train_diag_ubm
    from ser.ivector.online import utterance_ivectors

    train = make_synthetic_datadir(tmp_path / "train", num_spk=12, utts_per_spk=5, dim=8, seed=0)
    test = make_synthetic_datadir(tmp_path / "test", num_spk=8, utts_per_spk=5, dim=8, seed=1)
    get_pca_transform(train.path, tmp_path / "pca", dim=10, device="cpu")
    train_diag_ubm(train.path, 16, tmp_path / "pca", tmp_path / "ubm", num_frames=20000, num_iters_init=10,
                   device="cpu")
    train_ivector_extractor(train.path, tmp_path / "ubm", tmp_path / "ie", ivector_dim=8, num_iters=4,
                            gaussian_min_count=10, device="cpu")
    vecs = utterance_ivectors(test.path, tmp_path / "ie", device="cpu")
    assert set(vecs) == set(test.utts) and all(v.shape == (8,) for v in vecs.values())
    eer, n_tar, n_non = cosine_eer(vecs, test.utt2spk)
    assert (n_tar, n_non) == (8 * 10, 40 * 39 // 2 - 80)
    rng = np.random.default_rng(0)
    keys = sorted(test.utt2spk)
    shuffled = dict(zip(keys, rng.permutation([test.utt2spk[k] for k in keys])))
    eer_shuffled, _, _ = cosine_eer(vecs, shuffled)
    assert eer < 0.3 and eer_shuffled > 0.4, (eer, eer_shuffled)


@pytest.mark.parametrize("C,k,group", [(128, 5, 4), (64, 3, 8), (130, 5, 4), (16, 5, 4)])
def test_top_k_is_torch_topk(C: int, k: int, group: int):
    """top_k by group maxima gives torch.topk's values and columns (also where it falls back: C not a
    multiple of the group, too few groups), including rows whose best values share a group."""
    from ser.ivector.diag_ubm import top_k

    g = torch.Generator().manual_seed(C)
    x = torch.randn(3000, C, generator=g)
    x[:50, :group] += 10.0  # the k best of these rows are mostly in one group
    vals, idx = top_k(x, k, group)
    ref = torch.topk(x, k, dim=1)
    assert torch.equal(vals, ref.values) and torch.equal(idx, ref.indices)



# ---------------------------------------------------------------------------------------------
# training over nj jobs (Kaldi's shape) against the single-process training it replaced
def _serial_ubm(data: Path, pca_dir: Path, num_gauss: int, num_frames: int, num_iters_init: int, num_iters: int = 4,
                num_gselect: int = 30, subsample: int = 2, min_gaussian_weight: float = 1e-4) -> DiagGmm:
    """The single-process UBM training before the jobs (commit 6cfd780): every pass over the whole data
    in one process, Gaussian selection recomputed from 0.dubm in every pass, float32 sums per 32768 frames."""
    from ser.ivector.diag_ubm import init_from_feats
    from ser.ivector.features import global_cmvn_stats, iter_speaker_batches, load_data, speaker_order, subsample_mask
    d, dev = load_data(data), torch.device("cpu")
    src = UbmFeatures.from_dir(pca_dir)
    gstats, total = global_cmvn_stats(d, dev)
    ff = UbmFeatures(src.mat, gstats, src.splice_opts, src.cmvn_opts)
    gen = torch.Generator().manual_seed(0)
    keep = min(1.0, num_frames / total)
    kept = []
    for b in iter_speaker_batches(d, speaker_order(d), 200_000, dev):
        x = ff(b)
        kept.append(x[torch.rand(x.shape[0], generator=gen) < keep] if keep < 1.0 else x)
    gmm, _ = init_from_feats(torch.cat(kept)[:num_frames], num_gauss, num_gauss // 2, num_iters_init,
                             min_gaussian_weight, 0)
    gmm0 = gmm
    for it in range(num_iters):
        st = GmmStats.zeros(gmm.num_gauss, gmm.dim, dev)
        for b in iter_speaker_batches(d, speaker_order(d), 200_000, dev):
            x = ff(b)[subsample_mask(b, subsample)]
            accumulate(gmm, x, st, gselect_indices(gmm0, x, num_gselect))
        gmm = mle_update(gmm, st, min_gaussian_weight=min_gaussian_weight, remove_low_count_gaussians=it == num_iters - 1)
    return gmm


def _serial_extractor(data: Path, ubm_dir: Path, ivector_dim: int, num_iters: int, gaussian_min_count: float,
                      variance_floor_factor: float = 0.1) -> IvectorExtractor:
    """The single-process extractor training before the jobs (commit 6cfd780), per-utterance statistics
    kept in memory."""
    from ser.ivector.extractor import ExtractorStats, accumulate_utterances, update, utterance_stats
    from ser.ivector.features import iter_speaker_batches, load_data, speaker_order
    d, dev = load_data(data), torch.device("cpu")
    ff, ubm = UbmFeatures.from_dir(ubm_dir), DiagGmm.load(ubm_dir / "final.dubm.pt")
    C, F = ubm.num_gauss, ubm.dim
    S = torch.zeros(C, F, F, dtype=torch.float64)
    cache = [utterance_stats(b, ff, ubm, 5, 0.025, 0.1, 2, S, ubm.loglike_params(dev))
             for b in iter_speaker_batches(d, speaker_order(d), 200_000, dev)]
    ie = IvectorExtractor.init_from_diag_ubm(ubm, ivector_dim, 0)
    for _ in range(num_iters):
        derived = (ie.sigma_inv_m(), ie.U(), ie.gconsts(), torch.log(ie.w_vec))
        st = ExtractorStats.zeros(C, F, ivector_dim, dev)
        for us in cache:
            accumulate_utterances(ie, us.gamma.double(), us.X.double(), st, derived)
        ie = update(ie, st, S, variance_floor_factor, gaussian_min_count)
    return ie


def _assert_gmm_close(a: DiagGmm, b: DiagGmm, rtol: float) -> None:
    for k in ("weights", "means", "vars"):
        x, y = getattr(a, k), getattr(b, k)
        assert float((x - y).abs().max() / y.abs().max()) < rtol, (k, float((x - y).abs().max()))


def _assert_ie_close(a: IvectorExtractor, b: IvectorExtractor, rtol: float) -> None:
    for k in ("M", "Sigma_inv", "w_vec"):
        x, y = getattr(a, k), getattr(b, k)
        assert float((x - y).abs().max() / y.abs().max()) < rtol, (k, float((x - y).abs().max()))
    assert a.prior_offset == pytest.approx(b.prior_offset, rel=rtol)


@pytest.fixture(scope="module")
def nj_setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("ivjobs")
    d = make_synthetic_datadir(root / "data", num_spk=12, utts_per_spk=5, dim=8, seed=0)
    get_pca_transform(d.path, root / "pca", dim=10, device="cpu")
    return root, d.path


def test_ubm_jobs_equal_the_single_process_training(nj_setup):
    """nj 1 is the single-process training up to float32 rounding (its sums were float32 over other
    chunks); nj 4 (whole speakers per job, summed per iteration) is nj 1 up to double rounding; the
    stored Gaussian selection is gmm-gselect's from 0.dubm; one log per job and pass."""
    from ser.ivector.diag_ubm import train_diag_ubm
    root, data = nj_setup
    kw = dict(num_frames=20000, num_iters_init=10, device="cpu")
    ref = _serial_ubm(data, root / "pca", 16, 20000, 10)
    one, h1 = train_diag_ubm(data, 16, root / "pca", root / "ubm1", nj=1, **kw)
    four, h4 = train_diag_ubm(data, 16, root / "pca", root / "ubm4", nj=4, **kw)
    _assert_gmm_close(one, ref, 1e-4)
    _assert_gmm_close(four, one, 1e-12)
    np.testing.assert_allclose(h4["passes"], h1["passes"], rtol=1e-12)
    assert not list((root / "ubm4").glob("acc.*")) and not list((root / "ubm4").glob("gselect.*"))
    assert DiagGmm.load(root / "ubm4" / "final.dubm.pt").weights.equal(four.weights)


def test_extractor_jobs_equal_the_single_process_training(nj_setup):
    from ser.ivector.diag_ubm import train_diag_ubm
    root, data = nj_setup
    train_diag_ubm(data, 16, root / "pca", root / "ubm", num_frames=20000, num_iters_init=10, device="cpu")
    kw = dict(ivector_dim=6, num_iters=3, gaussian_min_count=10, device="cpu")
    ref = _serial_extractor(data, root / "ubm", 6, 3, 10)
    one, h1 = train_ivector_extractor(data, root / "ubm", root / "ie1", nj=1, **kw)
    four, h4 = train_ivector_extractor(data, root / "ubm", root / "ie4", nj=4, **kw)
    _assert_ie_close(one, ref, 1e-10)
    _assert_ie_close(four, one, 1e-9)
    np.testing.assert_allclose(h4, h1, rtol=1e-10)
    left = sorted(p.name for p in (root / "ie4").iterdir() if p.is_file())
    assert left == ["auxf", "final.dubm.pt", "final.ie.pt", "final.mat.pt", "global_cmvn.stats.pt",
                    "online_cmvn.conf", "splice_opts"]


def test_ubm_passes_as_jobs_of_the_job_runner(nj_setup):
    """A pass through ``python -m ser.jobs JOB=1:2`` (two processes): one log per job, the model of the
    in-process jobs; the jobs were given the threads the runner asked for."""
    from ser.ivector.diag_ubm import train_diag_ubm
    from ser.ivector.parallel import Runner
    root, data = nj_setup
    kw = dict(num_frames=20000, num_iters_init=10, num_iters=1, device="cpu", nj=2)
    ref, _ = train_diag_ubm(data, 16, root / "pca", root / "ubm_ref", **kw)
    got, _ = train_diag_ubm(data, 16, root / "pca", root / "ubm_cmd", runner=Runner("python -m ser.jobs", 1),
                            init_runner=Runner(), **kw)
    _assert_gmm_close(got, ref, 1e-12)
    for it in (0,):
        for job in (1, 2):
            text = (root / "ubm_cmd" / "log" / f"acc.{it}.{job}.log").read_text()
            assert f"pass {it} job {job}: log-likelihood per frame" in text and "# Ended (code 0)" in text
            assert "--num-threads 1" in text.splitlines()[0]


def test_job_steps_reject_bad_options(tmp_path):
    from ser.ivector.parallel import StepError, job_main
    with pytest.raises(StepError, match="unknown step 'gmm-foo'"):
        job_main(["gmm-foo"])
    with pytest.raises(StepError, match="unknown option --num-gauses"):
        job_main(["gmm-global-init-from-feats", "--num-gauses", "3"])
    with pytest.raises(StepError, match="--iteration: expected int, got 'x'"):
        job_main(["gmm-global-acc-stats", "--iteration", "x"])


def test_stored_gselect_must_match_the_data(nj_setup, tmp_path):
    """A later pass reading another data dir's Gaussian selection is an error naming the file."""
    from ser.ivector.diag_ubm import train_diag_ubm, ubm_acc
    root, data = nj_setup
    train_diag_ubm(data, 16, root / "pca", tmp_path / "u", num_frames=20000, num_iters_init=4, num_iters=1, device="cpu")
    import shutil
    DiagGmm.load(tmp_path / "u" / "final.dubm.pt").save(tmp_path / "u" / "0.dubm.pt")
    ubm_acc(str(tmp_path / "u"), str(data), 0, 1, device="cpu")
    shutil.copyfile(tmp_path / "u" / "0.dubm.pt", tmp_path / "u" / "1.dubm.pt")
    other = make_synthetic_datadir(tmp_path / "other", num_spk=2, utts_per_spk=2, dim=8, seed=5)
    with pytest.raises(ValueError, match=r"gselect\.1\.npys: does not match the frames"):
        ubm_acc(str(tmp_path / "u"), str(other.path), 1, 1, device="cpu")
