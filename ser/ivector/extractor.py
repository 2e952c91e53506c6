"""i-vector extractor (total-variability model without weight projection): model, E-step, M-step, training.

Mirrors Kaldi's ``src/ivector/ivector-extractor.{h,cc}`` (``IvectorExtractor``, ``IvectorExtractorStats``),
``src/ivectorbin/ivector-extractor-init.cc`` (``--use-weights=false``, from ``gmm-global-to-fgmm``) and
``egs/wsj/s5/steps/online/nnet2/train_ivector_extractor.sh``.

Model (per Gaussian c of the UBM; F = feature dim, D = i-vector dim):
  x | c, w ~ N(M_c w, Σ_c) with full Σ_c, w ~ N(o·e_0, I) where o is the *prior offset* (100 at init:
  M_c[:, 0] = μ_c / 100, other columns N(0, 1)).  Posterior of w given zeroth/first-order stats γ_c, f_c:
  precision P = I + Σ_c γ_c U_c with U_c = M_cᵀ Σ_c⁻¹ M_c, mean = P⁻¹ (o·e_0 + Σ_c M_cᵀ Σ_c⁻¹ f_c).
Training stats (per utterance, Kaldi ``ivector-extractor-acc-stats``): posteriors from the *diagonal* UBM
on online-CMN'ed features (top ``num_gselect``, ``min_post`` pruning, scaled by posterior_scale·subsample),
first/second-order stats on the features without CMN, every ``subsample``-th frame.
M-step (``IvectorExtractorStats::Update``): M_c = Y_c R_c⁻¹; Σ_c from S_c − Y_c M_cᵀ − M_c Y_cᵀ + M_c R_c M_cᵀ,
floored to ``variance_floor_factor`` × the average covariance; Gaussians with count < ``gaussian_min_count``
are left alone; then the prior update (min-divergence re-parametrisation so the i-vector distribution is
N(o'·e_0, I)) with the ``diagonalize`` rotation of dims 1..D-1.  ``auxf`` is Kaldi's ``GetAuxf`` (acoustic
+ prior terms, with the i-vector posterior variance) summed over utterances — an evidence lower bound
that E-M cannot decrease.

Jobs, as Kaldi's script: ``nj`` jobs on ``data/split<nj>/JOB`` first compute the UBM posteriors of
their frames once (the UBM is fixed) and keep each utterance's zeroth/first-order statistics on disk
(``utt_stats.<job>.npys``, read batch by batch) and their second-order sums (``S.<job>.pt``); every
iteration then runs ``nj`` accumulation jobs on those (``acc.<iter>.<job>.pt``,
``log/acc.<iter>.<job>.log``), summed and re-estimated in the driver.  Kaldi recomputes the posteriors
in every iteration (``gmm-global-get-post`` in the acc pipeline); the statistics here are the same.

Deviation: Kaldi solves M_c with ``SolveQuadraticMatrixProblem`` (robust to singular R); we use a direct
solve (R_c is positive definite whenever the Gaussian has been seen).  All training maths in float64.

Model file ``final.ie.pt``: {"M": float64 (C, F, D), "Sigma_inv": float64 (C, F, F), "w_vec": float64 (C,)
(UBM weights), "prior_offset": float64 scalar tensor}.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from ser.ivector.diag_ubm import DiagGmm, UbmFeatures, split_parts, top_k
from ser.device import resolve_device
from ser.ivector.features import (UttBatch, apply_transform, iter_speaker_batches, load_data,
                                  speaker_order, splice, subsample_mask)
from ser.io.atomic import atomic_write_text
from ser.io.npy_stream import NpyStreamWriter, iter_npy_stream
from ser.io.torch_io import load_torch, save_torch
from ser.ivector.parallel import Runner

log = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------------
def ubm_posteriors(loglikes: torch.Tensor, num_gselect: int, min_post: float, scale: float
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """``VectorToPosteriorEntry`` (src/hmm/posterior.cc) + ``scale-post``, vectorised.

    Top ``num_gselect`` Gaussians, softmax over them, drop those whose normalised posterior is below
    ``min_post`` (the best one always stays), renormalise, multiply by ``scale``.
    Returns (indices (N, k) int64, posteriors (N, k)), pruned entries having posterior 0.
    """
    k = min(num_gselect, loglikes.shape[1])
    vals, idx = top_k(loglikes, k)
    return idx, prune_posteriors(vals, min_post, scale)


def prune_posteriors(vals: torch.Tensor, min_post: float, scale: float) -> torch.Tensor:
    """The part of ``ubm_posteriors`` after top-k: ``vals`` (N, k) log-likelihoods sorted best first."""
    p = torch.softmax(vals, dim=1)
    if min_post > 0:
        keep = p >= min_post
        keep[:, 0] = True
        p = torch.where(keep, p, torch.zeros_like(p))
        p = p / p.sum(1, keepdim=True)
    return p * scale


@dataclass
class IvectorExtractor:
    M: torch.Tensor          # (C, F, D) float64
    Sigma_inv: torch.Tensor  # (C, F, F) float64
    w_vec: torch.Tensor      # (C,) float64
    prior_offset: float

    @property
    def num_gauss(self) -> int:
        return int(self.M.shape[0])

    @property
    def feat_dim(self) -> int:
        return int(self.M.shape[1])

    @property
    def ivector_dim(self) -> int:
        return int(self.M.shape[2])

    # derived variables (ComputeDerivedVars)
    def sigma_inv_m(self) -> torch.Tensor:
        return self.Sigma_inv @ self.M                       # (C, F, D)

    def U(self) -> torch.Tensor:
        return self.M.transpose(1, 2) @ self.sigma_inv_m()  # (C, D, D)

    def gconsts(self) -> torch.Tensor:
        logdet_inv = torch.linalg.slogdet(self.Sigma_inv)[1]
        return -0.5 * (-logdet_inv + self.feat_dim * math.log(2 * math.pi))

    def to_dict(self) -> dict:
        return {"M": self.M.double().cpu(), "Sigma_inv": self.Sigma_inv.double().cpu(),
                "w_vec": self.w_vec.double().cpu(), "prior_offset": torch.tensor(float(self.prior_offset),
                                                                                dtype=torch.float64)}

    @classmethod
    def from_dict(cls, d: dict) -> "IvectorExtractor":
        for k in ("M", "Sigma_inv", "w_vec", "prior_offset"):
            if k not in d:
                raise ValueError(f"i-vector extractor file lacks {k!r}")
        return cls(d["M"].double(), d["Sigma_inv"].double(), d["w_vec"].double(), float(d["prior_offset"]))

    def save(self, path: str | os.PathLike) -> None:
        save_torch(self.to_dict(), path)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "IvectorExtractor":
        return cls.from_dict(load_torch(path, what="i-vector extractor",
                                        expect_keys=("M", "Sigma_inv", "w_vec", "prior_offset")))

    @classmethod
    def init_from_diag_ubm(cls, ubm: DiagGmm, ivector_dim: int, seed: int = 0) -> "IvectorExtractor":
        """``ivector-extractor-init --use-weights=false`` on ``gmm-global-to-fgmm``."""
        if ivector_dim < 2:
            raise ValueError(f"--ivector-dim must be >= 2, got {ivector_dim}")
        gen = torch.Generator().manual_seed(seed)
        C, F = ubm.means.shape
        prior_offset = 100.0
        M = torch.randn(C, F, ivector_dim, generator=gen, dtype=torch.float64)
        M[:, :, 0] = ubm.means / prior_offset
        Sigma_inv = torch.diag_embed(1.0 / ubm.vars)
        return cls(M, Sigma_inv, ubm.weights.clone(), prior_offset)

    # E-step -----------------------------------------------------------------------------------
    def posterior(self, gamma: torch.Tensor, X: torch.Tensor, want_var: bool = True,
                  derived: tuple[torch.Tensor, torch.Tensor] | None = None
                  ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor, torch.Tensor]:
        """``GetIvectorDistribution`` for a batch: gamma (B, C), raw first-order X (B, C, F).

        Returns (mean (B, D) including the prior offset in dim 0, var (B, D, D) or None, linear a (B, D)
        = Σ_c M_cᵀΣ_c⁻¹X_c, quadratic B (B, D, D) = Σ_c γ_c U_c).
        """
        SiM, U = derived if derived is not None else (self.sigma_inv_m(), self.U())
        dev = gamma.device
        SiM, U = SiM.to(dev), U.to(dev)
        D = self.ivector_dim
        a = torch.einsum("bcf,cfd->bd", X, SiM)
        Bq = (gamma @ U.reshape(self.num_gauss, D * D)).reshape(-1, D, D)
        lin = a.clone()
        lin[:, 0] += self.prior_offset
        P = Bq + torch.eye(D, dtype=Bq.dtype, device=dev)
        L = torch.linalg.cholesky(P)
        mean = torch.cholesky_solve(lin[:, :, None], L)[:, :, 0]
        var = torch.cholesky_inverse(L) if want_var else None
        return mean, var, a, Bq


@dataclass
class ExtractorStats:
    """``IvectorExtractorStats`` without weight stats."""

    gamma: torch.Tensor        # (C,)
    Y: torch.Tensor            # (C, F, D)
    R: torch.Tensor            # (C, D, D)
    num_ivectors: float
    ivector_sum: torch.Tensor  # (D,)
    ivector_scatter: torch.Tensor  # (D, D)
    tot_auxf: float

    @classmethod
    def zeros(cls, C: int, F: int, D: int, device: torch.device) -> "ExtractorStats":
        z = lambda *s: torch.zeros(*s, dtype=torch.float64, device=device)  # noqa: E731
        return cls(z(C), z(C, F, D), z(C, D, D), 0.0, z(D), z(D, D), 0.0)


def accumulate_utterances(ie: IvectorExtractor, gamma: torch.Tensor, X: torch.Tensor, st: ExtractorStats,
                          derived: tuple[torch.Tensor, ...]) -> None:
    """``CommitStatsForUtterance`` for a batch of utterances (gamma (B, C), X (B, C, F), float64)."""
    SiM, U, gconst, logw = derived
    mean, var, a, Bq = ie.posterior(gamma, X, True, (SiM, U))
    assert var is not None
    scatter = var + mean[:, :, None] * mean[:, None, :]
    st.gamma += gamma.sum(0)
    st.Y += torch.einsum("bcf,bd->cfd", X, mean)
    D = ie.ivector_dim
    st.R += (gamma.T @ scatter.reshape(-1, D * D)).reshape(-1, D, D)
    st.num_ivectors += gamma.shape[0]
    st.ivector_sum += mean.sum(0)
    st.ivector_scatter += scatter.sum(0)
    # GetAuxf: weight + gconst + mean-part (without the data term K, added with the variance part
    # from the global second-order stats) + prior part
    acoustic = gamma @ (logw + gconst) + (mean * a).sum(1) - 0.5 * torch.einsum("bi,bij,bj->b", mean, Bq, mean) \
        - 0.5 * (var * Bq).sum((1, 2))
    off = mean.clone()
    off[:, 0] -= ie.prior_offset
    prior = -0.5 * ((off * off).sum(1) + torch.diagonal(var, dim1=1, dim2=2).sum(1) - D - torch.linalg.slogdet(var)[1])
    st.tot_auxf += float((acoustic + prior).sum())


def _apply_floor(S: torch.Tensor, floor: torch.Tensor) -> tuple[torch.Tensor, int]:
    """``SpMatrix::ApplyFloor(floor)``: smallest change making S − floor PSD; returns (S', #floored)."""
    L = torch.linalg.cholesky(floor)
    Linv = torch.linalg.inv(L)
    T = Linv @ S @ Linv.T
    s, P = torch.linalg.eigh(0.5 * (T + T.T))
    n = int((s < 1.0).sum())
    return L @ (P * s.clamp(min=1.0)) @ P.T @ L.T, n


def update(ie: IvectorExtractor, st: ExtractorStats, S: torch.Tensor, variance_floor_factor: float = 0.1,
           gaussian_min_count: float = 100.0, diagonalize: bool = True, update_variances: bool = True
           ) -> IvectorExtractor:
    """``IvectorExtractorStats::Update`` (projections, variances, prior). ``S`` (C, F, F) second-order stats."""
    dev = st.gamma.device
    C, F, D = ie.M.shape
    M = ie.M.clone().to(dev)
    Sigma_inv = ie.Sigma_inv.clone().to(dev)
    ok = st.gamma >= gaussian_min_count
    nbad = int((~ok).sum())
    if nbad:
        log.warning("skipping %d Gaussians with count below --gaussian-min-count %g", nbad, gaussian_min_count)
    if nbad == C:
        raise RuntimeError("no Gaussian has enough data to update the i-vector extractor")
    # projections: M_c = Y_c R_c^-1
    Rk, Yk = st.R[ok], st.Y[ok]
    M[ok] = torch.linalg.solve(Rk, Yk.transpose(1, 2)).transpose(1, 2)
    # variances
    if update_variances:
        Mk = M[ok]
        YM = Yk @ Mk.transpose(1, 2)
        raw = S[ok] - YM - YM.transpose(1, 2) + Mk @ Rk @ Mk.transpose(1, 2)
        var_floor = raw.sum(0) * (variance_floor_factor / float(st.gamma[ok].sum()))
        s, P = torch.linalg.eigh(var_floor)
        var_floor = (P * s.clamp(min=float(s.abs().max()) * 1e-4)) @ P.T
        raw = raw / st.gamma[ok][:, None, None]
        floored = []
        tot_floored = 0
        for c in range(raw.shape[0]):  # per Gaussian (C small eigen-problems)
            v, n = _apply_floor(raw[c], var_floor)
            floored.append(v)
            tot_floored += n
        Sigma_inv[ok] = torch.linalg.inv(torch.stack(floored))
        Sigma_inv = 0.5 * (Sigma_inv + Sigma_inv.transpose(1, 2))
        log.info("floored %.2f%% of all Gaussian eigenvalues", 100.0 * tot_floored / (raw.shape[0] * F))
    new = IvectorExtractor(M.cpu(), Sigma_inv.cpu(), ie.w_vec.clone(), ie.prior_offset)
    return update_prior(new, st, diagonalize)


def update_prior(ie: IvectorExtractor, st: ExtractorStats, diagonalize: bool = True) -> IvectorExtractor:
    """``IvectorExtractorStats::UpdatePrior``: make the i-vector prior N(o'·e_0, I) by transforming M."""
    D = ie.ivector_dim
    mean = (st.ivector_sum / st.num_ivectors).cpu()
    covar = (st.ivector_scatter / st.num_ivectors).cpu() - torch.outer(mean, mean)
    s, P = torch.linalg.eigh(0.5 * (covar + covar.T))
    nfl = int((s < 1e-7).sum())
    if nfl:
        log.warning("floored %d eigenvalues of the i-vector covariance", nfl)
    s = s.clamp(min=1e-7)
    T = P.T / torch.sqrt(s)[:, None]               # T covar T^T = I
    sum_proj = T @ mean
    x = sum_proj / sum_proj.norm()
    alpha = 1.0 / (math.sqrt(2.0) * math.sqrt(1.0 - float(x[0])))
    a = alpha * x
    a[0] -= alpha
    Uh = torch.eye(D, dtype=torch.float64) - 2.0 * torch.outer(a, a)   # Householder: x -> e_0
    V = Uh @ T
    if diagonalize:
        Vtemp = V[1:].clone()
        Tsub = Vtemp[:, 1:]
        Uavg = torch.einsum("c,cij->ij", ie.w_vec, ie.U())
        Tinv = torch.linalg.inv(Tsub)
        Vavg = Tinv.T @ Uavg[1:, 1:] @ Tinv
        ev, Pv = torch.linalg.eigh(0.5 * (Vavg + Vavg.T))
        Pv = Pv[:, torch.argsort(ev, descending=True)]
        V = torch.cat([V[:1], Pv.T @ Vtemp])
    new_offset = float((V @ mean)[0])
    Vinv = torch.linalg.inv(V)
    return IvectorExtractor(ie.M @ Vinv, ie.Sigma_inv, ie.w_vec, new_offset)


# ---------------------------------------------------------------------------------------------
@dataclass
class UttStats:
    """Zeroth/first-order stats of a batch of utterances, plus their second-order sum per Gaussian."""

    gamma: torch.Tensor   # (B, C) float32
    X: torch.Tensor       # (B, C, F) float32 (raw, not centred)


def utterance_stats(b: UttBatch, feats_fn: UbmFeatures, ubm: DiagGmm, num_gselect: int, min_post: float,
                    posterior_scale: float, subsample: int, S: torch.Tensor | None = None,
                    params: tuple[torch.Tensor, ...] | None = None) -> UttStats:
    """Per-utterance stats as ``gmm-global-get-post | scale-post`` + ``ivector-extractor-acc-stats``.

    Posteriors on online-CMN'ed (speaker carry-over) spliced+transformed features, statistics on the
    spliced+transformed features without CMN; every ``subsample``-th frame, posteriors × posterior_scale·subsample.
    ``S`` (C, F, F) float64, if given, receives Σ_t γ_tc x_t x_tᵀ.
    """
    keep = subsample_mask(b, subsample)
    y_post = feats_fn(b, carry_speaker=True)[keep]
    x = apply_transform(feats_fn.mat, splice(b, b.feats, feats_fn.splice_opts))[keep]
    uidx = b.utt_index()[keep]
    ll = ubm.loglikes(y_post, params)
    idx, p = ubm_posteriors(ll, num_gselect, min_post, posterior_scale * subsample)
    C, F, B = ubm.num_gauss, x.shape[1], len(b.utts)
    k = idx.shape[1]
    key = (uidx[:, None] * C + idx).flatten()
    pf = p.flatten()
    gamma = torch.zeros(B * C, dtype=torch.float32, device=x.device).index_add_(0, key, pf).reshape(B, C)
    xr = x.repeat_interleave(k, 0)
    X = torch.zeros(B * C, F, dtype=torch.float32, device=x.device).index_add_(0, key, xr * pf[:, None])
    if S is not None:
        g = idx.flatten()
        order = torch.argsort(g)
        counts = torch.bincount(g, minlength=C).tolist()
        xs, ps = xr[order].double(), pf[order].double()
        for c, (xc, pc) in enumerate(zip(torch.split(xs, counts), torch.split(ps, counts))):
            if xc.shape[0]:
                S[c] += (xc * pc[:, None]).T @ xc
    return UttStats(gamma, X.reshape(B, C, F))


def _stats_path(out: Path, job: int) -> Path:
    return out / f"utt_stats.{job}.npys"


def ie_utt_stats(ie_dir: str = "", data: str = "", job: int = 1, num_gselect: int = 5, posterior_scale: float = 0.1,
                 min_post: float = 0.025, subsample: int = 2, device: str = "auto", batch_frames: int = 200_000) -> None:
    """One job's pass over its part of the data with the (fixed) UBM ``final.dubm.pt``: the posteriors of
    every kept frame (``gmm-global-get-post --n --min-post | scale-post``, computed once instead of in every
    iteration as Kaldi does), reduced to the zeroth and first-order statistics of every utterance, which
    the iterations read: ``utt_stats.<job>.npys`` (per batch: gamma (B, C), X (B, C, F), float32), and
    the second-order statistics Σ_t γ_tc x_t x_tᵀ (model-independent) in ``S.<job>.pt`` (float64)."""
    dev = resolve_device(device)
    out = Path(ie_dir)
    d = load_data(data)
    feats_fn = UbmFeatures.from_dir(out)
    ubm = DiagGmm.load(out / "final.dubm.pt")
    params = ubm.loglike_params(dev)
    C, F = ubm.num_gauss, ubm.dim
    S = torch.zeros(C, F, F, dtype=torch.float64, device=dev)
    n_utts = 0
    with NpyStreamWriter(_stats_path(out, job), 2) as w:
        for b in iter_speaker_batches(d, speaker_order(d), batch_frames, dev, progress="ivector stats"):
            us = utterance_stats(b, feats_fn, ubm, num_gselect, min_post, posterior_scale, subsample, S, params)
            w.write(us.gamma.cpu().numpy(), us.X.cpu().numpy())
            n_utts += len(b.utts)
    save_torch({"S": S.cpu()}, out / f"S.{job}.pt")
    log.info("job %d: statistics of %d utterances", job, n_utts)


def _ie_stats_to_dict(st: ExtractorStats) -> dict:
    f64 = lambda v: torch.tensor(v, dtype=torch.float64)  # noqa: E731
    return {"gamma": st.gamma.cpu(), "Y": st.Y.cpu(), "R": st.R.cpu(), "num_ivectors": f64(st.num_ivectors),
            "ivector_sum": st.ivector_sum.cpu(), "ivector_scatter": st.ivector_scatter.cpu(),
            "tot_auxf": f64(st.tot_auxf)}


def ie_acc(ie_dir: str = "", iteration: int = 0, job: int = 1, device: str = "auto") -> None:
    """``ivector-extractor-acc-stats`` of one job with model ``<iteration>.ie.pt`` on the job's stored
    per-utterance statistics: ``acc.<iteration>.<job>.pt`` (``IvectorExtractorStats``, float64)."""
    dev = resolve_device(device)
    out = Path(ie_dir)
    ie = IvectorExtractor.load(out / f"{iteration}.ie.pt")
    derived = (ie.sigma_inv_m().to(dev), ie.U().to(dev), ie.gconsts().to(dev), torch.log(ie.w_vec).to(dev))
    st = ExtractorStats.zeros(ie.num_gauss, ie.feat_dim, ie.ivector_dim, dev)
    for gamma, X in iter_npy_stream(_stats_path(out, job), 2):
        if gamma.shape[1:] != (ie.num_gauss,) or X.shape[1:] != (ie.num_gauss, ie.feat_dim):
            raise ValueError(f"{_stats_path(out, job)}: statistics of shape {X.shape[1:]}, the model's "
                             f"{(ie.num_gauss, ie.feat_dim)}")
        accumulate_utterances(ie, torch.from_numpy(gamma).to(dev).double(), torch.from_numpy(X).to(dev).double(),
                              st, derived)
    save_torch(_ie_stats_to_dict(st), out / f"acc.{iteration}.{job}.pt")


def sum_ie_accs(paths: list[Path]) -> ExtractorStats:
    """``ivector-extractor-sum-accs``: the jobs' statistics added in job order (float64)."""
    keys = ("gamma", "Y", "R", "num_ivectors", "ivector_sum", "ivector_scatter", "tot_auxf")
    st = None
    for p in paths:
        a = load_torch(p, what="i-vector extractor statistics", expect_keys=keys)
        if st is None:
            st = ExtractorStats(a["gamma"].clone(), a["Y"].clone(), a["R"].clone(), float(a["num_ivectors"]),
                                a["ivector_sum"].clone(), a["ivector_scatter"].clone(), float(a["tot_auxf"]))
            continue
        if a["Y"].shape != st.Y.shape:
            raise ValueError(f"{p}: statistics of shape {tuple(a['Y'].shape)}, the others {tuple(st.Y.shape)}")
        for k in ("gamma", "Y", "R", "ivector_sum", "ivector_scatter"):
            getattr(st, k).add_(a[k])
        st.num_ivectors += float(a["num_ivectors"])
        st.tot_auxf += float(a["tot_auxf"])
    if st is None:
        raise ValueError("no statistics to sum")
    return st


def ie_update(ie_dir: str | os.PathLike, iteration: int, nj: int, S: torch.Tensor, variance_floor_factor: float = 0.1,
              gaussian_min_count: float = 100.0) -> float:
    """``ivector-extractor-est`` on ``ivector-extractor-sum-accs`` of the iteration's jobs:
    ``<iteration+1>.ie.pt``; the statistics and the previous model are deleted.  Returns the auxf per frame."""
    out = Path(ie_dir)
    accs = [out / f"acc.{iteration}.{j}.pt" for j in range(1, nj + 1)]
    st = sum_ie_accs(accs)
    ie = IvectorExtractor.load(out / f"{iteration}.ie.pt")
    st.tot_auxf += -0.5 * float(torch.einsum("cij,cji->", ie.Sigma_inv, S))
    auxf = st.tot_auxf / float(st.gamma.sum())
    log.info("iteration %d: auxf per frame %.5f over %.1f frames (%d utterances)", iteration, auxf,
             float(st.gamma.sum()), int(st.num_ivectors))
    update(ie, st, S, variance_floor_factor, gaussian_min_count).save(out / f"{iteration + 1}.ie.pt")
    for p in accs:
        p.unlink()
    (out / f"{iteration}.ie.pt").unlink()
    return auxf


def train_ivector_extractor(data: str | os.PathLike, ubm_dir: str | os.PathLike, out_dir: str | os.PathLike,
                            ivector_dim: int = 100, num_iters: int = 10, num_gselect: int = 5,
                            posterior_scale: float = 0.1, min_post: float = 0.025, subsample: int = 2,
                            gaussian_min_count: float = 100.0, variance_floor_factor: float = 0.1,
                            seed: int = 0, device: str = "auto", batch_frames: int = 200_000, nj: int = 1,
                            runner: Runner | None = None) -> tuple[IvectorExtractor, list[float]]:
    """``train_ivector_extractor.sh``: ``nj`` statistics jobs (``log/stats.<job>.log``), then per iteration
    ``nj`` accumulation jobs (``log/acc.<iteration>.<job>.log``) and the sum and update (in this process).
    Returns the model and the auxf per frame of every iteration."""
    runner = runner or Runner()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for f in [*out.glob("acc.*.pt"), *out.glob("utt_stats.*.npys"), *out.glob("S.*.pt"), *out.glob("[0-9]*.ie.pt")]:
        f.unlink()  # a previous run's (another nj, other data)
    ubm_dir = Path(ubm_dir)
    feats_fn = UbmFeatures.from_dir(ubm_dir)
    feats_fn.copy_to(ubm_dir, out)
    ubm = DiagGmm.load(ubm_dir / "final.dubm.pt")
    ubm.save(out / "final.dubm.pt")
    if feats_fn.mat.shape[0] != ubm.dim:
        raise ValueError(f"{ubm_dir}: transform output dim {feats_fn.mat.shape[0]} != UBM dim {ubm.dim}")
    IvectorExtractor.init_from_diag_ubm(ubm, ivector_dim, seed).save(out / "0.ie.pt")
    sdata, nj = split_parts(data, nj)
    runner.run("ivector-extractor-get-stats", out / "log" / "stats.JOB.log", nj, ie_dir=str(out), data=sdata,
               job="JOB", num_gselect=num_gselect, posterior_scale=posterior_scale, min_post=min_post,
               subsample=subsample, device=device, batch_frames=batch_frames)
    S = torch.zeros(ubm.num_gauss, ubm.dim, ubm.dim, dtype=torch.float64)
    for j in range(1, nj + 1):
        S += load_torch(out / f"S.{j}.pt", what="second-order statistics", expect_keys=("S",))["S"]
    history = []
    for it in range(num_iters):
        runner.run("ivector-extractor-acc-stats", out / "log" / f"acc.{it}.JOB.log", nj, ie_dir=str(out),
                   iteration=it, job="JOB", device=device)
        history.append(ie_update(out, it, nj, S, variance_floor_factor, gaussian_min_count))
    ie = IvectorExtractor.load(out / f"{num_iters}.ie.pt")
    ie.save(out / "final.ie.pt")
    for f in [out / f"{num_iters}.ie.pt", *out.glob("utt_stats.*.npys"), *out.glob("S.*.pt")]:
        f.unlink()
    atomic_write_text(out / "auxf", "".join(f"{i} {v:.6f}\n" for i, v in enumerate(history)))
    return ie, history
