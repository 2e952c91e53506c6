"""Online i-vector extraction, vectorised over frames, rows and utterances.

Mirrors Kaldi's ``src/online2bin/ivector-extract-online2.cc`` with ``OnlineIvectorFeature``
(``src/online2/online-ivector-feature.cc``) and ``OnlineIvectorEstimationStats``
(``src/ivector/ivector-extractor.cc``), as run by ``steps/online/nnet2/extract_ivectors_online.sh``
(``use_most_recent_ivector=false``, ``greedy_ivector_extractor=false``, no silence weighting).

Semantics (per speaker, utterances in spk2utt order):
- Features: posteriors from the diagonal UBM on online-CMN'ed (speaker state carried over) spliced
  and transformed features; statistics on the spliced and transformed features *without* CMN.
- Posteriors: top ``num_gselect`` (5), ``min_post`` (0.025) pruning of the normalised posteriors, then
  × ``posterior_scale`` (0.1) (``VectorToPosteriorEntry``; pruning happens before scaling, as Kaldi).
- Rows: an utterance of T frames gets ceil(T / ivector_period) rows; row i is the i-vector estimated
  from the speaker's carried-over statistics plus frames 0 .. 10·i **inclusive** of the current
  utterance (Kaldi's ``UpdateStatsUntilFrame(10·i)`` followed by ``GetIvector``).  Because of the ±3
  splice, frame 10·i's features look at raw frames up to 10·i+3 (edge frames repeated).
- Carry-over: after an utterance, Kaldi's ``GetAdaptationState`` keeps the statistics *as of its last
  row* (frames after 10·(rows−1) never enter them) and ``LimitFrames`` scales the data part down to
  ``max_remembered_frames`` (1000) × posterior_scale of count.  The online-CMN speaker state keeps all
  frames (the 1000-frame limit cannot change the CMN result, since at most 600 speaker frames are used).
- Output: the posterior mean with the prior offset subtracted from dim 0.  ``max_count`` (default 0 =
  off) scales the prior up once the count exceeds it, as ``OnlineIvectorEstimationStats``.

Deviation from Kaldi: the i-vector at each row is the exact solution of (I + Σ_c γ_c U_c) w = linear by
a batched Cholesky solve, instead of 15 warm-started conjugate-gradient iterations.  The linear term is
accumulated in centred form Σ_c M_cᵀΣ_c⁻¹(f_c − γ_c m_c), m_c = o·M_c[:, 0] (equal to Kaldi's with the
offset moved out), which keeps float32 accurate.  ``online_cmvn_iextractor=true`` is not supported.

Implementation (all float32, no per-frame or per-row Python loops):
- UBM log-likelihoods are one GEMM, [y, y²]·[μ/σ², −½/σ²]ᵀ + gconst, in cache-sized frame chunks with top-k.
- The quadratic term of every row is one dense GEMM, Q_i = Σ_c G_ic U_c with the cumulative occupancies
  G (rows × Gaussians, the speaker's carried-over occupancy included) -- Kaldi's per-frame
  ``quadratic_term_.AddVec(γ, U_c)`` summed in closed form.  (Sparse increments ΔG (≤ num_gselect
  Gaussians per frame) times U, then a cumulative sum over the rows, do fewer flops but ran slower:
  7.5 against 5.7 ms for the 620 rows of 61 s on one core, measured.)  U_c is stored in
  ``batched_cholesky.BlockLayout`` order (the blocks of the recursive Cholesky, about D²/2 numbers,
  like Kaldi's packed ``SpMatrix`` but in the order the factorisation reads them), so Q_i is never
  unpacked.  Rows are processed in chunks of ``rows_per_chunk`` so
  the matrices stay in cache, and solved by ``batched_cholesky.spd_solve_blocks`` (blocked Cholesky,
  mostly batched GEMMs).  Results equal the dense formulation up to float32 rounding.
"""

from __future__ import annotations

import logging
import os
import time
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ser.io.atomic import atomic_write_text
from ser.io.tables import ArkScpWriter
from ser.ivector.batched_cholesky import BlockLayout, spd_solve_blocks
from ser.ivector.diag_ubm import DiagGmm, UbmFeatures, top_k
from ser.ivector.extractor import IvectorExtractor, prune_posteriors
from ser.device import resolve_device
from ser.io.datadir import modify_speaker_info
from ser.ivector.features import UttBatch, apply_transform, iter_speaker_batches, load_data, speaker_order, splice

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class OnlineIvectorOptions:
    """``OnlineIvectorExtractionConfig`` defaults as written by extract_ivectors_online.sh."""

    ivector_period: int = 10
    num_gselect: int = 5
    min_post: float = 0.025
    posterior_scale: float = 0.1
    max_remembered_frames: int = 1000
    max_count: float = 0.0


class OnlineIvectorExtractor:
    """Holds the models on a device and turns batches of whole speakers into i-vector rows."""

    def __init__(self, ie: IvectorExtractor, ubm: DiagGmm, feats_fn: UbmFeatures,
                 opts: OnlineIvectorOptions = OnlineIvectorOptions(), device: str | torch.device = "auto"):
        if opts.ivector_period <= 0 or opts.num_gselect <= 0 or not 0 <= opts.min_post < 0.5 \
                or not 0 < opts.posterior_scale <= 1 or opts.max_remembered_frames < 0:
            raise ValueError(f"bad online i-vector options {opts}")
        if ie.num_gauss != ubm.num_gauss or ie.feat_dim != ubm.dim:
            raise ValueError(f"extractor ({ie.num_gauss} Gaussians, dim {ie.feat_dim}) does not match the UBM "
                             f"({ubm.num_gauss}, {ubm.dim})")
        self.dev = resolve_device(device)
        self.opts, self.ie, self.ubm, self.feats_fn = opts, ie, ubm, feats_fn
        dt = torch.float32
        mi, nhi, gc = ubm.loglike_params(self.dev, dt)
        self.ubm_w = torch.cat([mi, nhi], 1).T.contiguous()             # (2F, C)
        self.ubm_gconst = gc
        self.SiM = ie.sigma_inv_m().to(self.dev, dt)                     # (C, F, D)
        self.layout = BlockLayout(ie.ivector_dim)
        self.Ublocks = ie.U().flatten(1)[:, self.layout.index].to(self.dev, dt)  # (C, ~D²/2) in solve order
        self.centres = (ie.prior_offset * ie.M[:, :, 0]).to(self.dev, dt)  # (C, F)
        self.feats_fn = UbmFeatures(feats_fn.mat.to(self.dev), feats_fn.gstats.to(self.dev),
                                    feats_fn.splice_opts, feats_fn.cmvn_opts)

    @classmethod
    def from_dir(cls, extractor_dir: str | os.PathLike, opts: OnlineIvectorOptions = OnlineIvectorOptions(),
                 device: str | torch.device = "auto") -> "OnlineIvectorExtractor":
        d = Path(extractor_dir)
        return cls(IvectorExtractor.load(d / "final.ie.pt"), DiagGmm.load(d / "final.dubm.pt"),
                   UbmFeatures.from_dir(d), opts, device)

    @property
    def ivector_dim(self) -> int:
        return self.ie.ivector_dim

    # ---------------------------------------------------------------------------------------
    def posteriors(self, y: torch.Tensor, chunk: int = 4096) -> tuple[torch.Tensor, torch.Tensor]:
        """``gmm-global-get-post`` with pruning: (idx (N, k), post (N, k)) from the diagonal UBM.

        The log-likelihoods are one GEMM, [y, y²]·[μ/σ², −½/σ²]ᵀ + gconst, over cache-sized frame chunks
        (the (chunk, C) block is consumed by top-k while still in cache).
        """
        o = self.opts
        k = min(o.num_gselect, self.ie.num_gauss)
        idx = torch.empty(y.shape[0], k, dtype=torch.int64, device=y.device)
        vals = torch.empty(y.shape[0], k, dtype=y.dtype, device=y.device)
        for s in range(0, y.shape[0], chunk):
            yc = y[s:s + chunk]
            ll = torch.addmm(self.ubm_gconst, torch.cat([yc, yc * yc], 1), self.ubm_w)
            vals[s:s + chunk], idx[s:s + chunk] = top_k(ll, k)
        return idx, prune_posteriors(vals, o.min_post, o.posterior_scale)

    def row_stats(self, b: UttBatch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Per-row increments of (occupancy (R, C), centred linear term (R, D)) and rows per utterance."""
        o = self.opts
        C = self.ie.num_gauss
        y_post = self.feats_fn(b, carry_speaker=True)
        x = apply_transform(self.feats_fn.mat, splice(b, b.feats, self.feats_fn.splice_opts))
        idx, p = self.posteriors(y_post)
        k = idx.shape[1]
        uidx = b.utt_index()
        t = b.frame_in_utt()
        P = o.ivector_period
        nrows = (b.lengths + P - 1) // P
        rstart = torch.cumsum(nrows, 0) - nrows
        R = int(nrows.sum())
        r = (t + P - 1) // P                          # frame t first counts in row ceil(t/P)
        row = torch.where(r < nrows[uidx], rstart[uidx] + r, torch.full_like(r, R))  # row R: discarded frames
        # (frame, Gaussian) pairs that survived pruning and belong to a row, summed per (row, Gaussian)
        keep = (p > 0) & (row < R)[:, None]
        frame = torch.arange(x.shape[0], device=x.device)[:, None].expand(-1, k)[keep]
        pf = p[keep]
        key, inv = torch.unique(idx[keep] * R + row[frame], return_inverse=True)   # Gaussian-major order
        kg, kr = key // R, key % R
        gam = torch.zeros(key.shape[0], dtype=x.dtype, device=x.device).index_add_(0, inv, pf)
        fx = torch.zeros(key.shape[0], x.shape[1], dtype=x.dtype, device=x.device).index_add_(
            0, inv, x[frame] * pf[:, None])
        fx -= gam[:, None] * self.centres[kg]                 # centred first-order stats Σ p·(x − m_c)
        dG = torch.zeros(R * C, dtype=x.dtype, device=x.device).index_put_((kr * C + kg,), gam)
        # linear term, one GEMM per Gaussian: (f − γ m_c)ᵀ (Σ_c⁻¹M_c)
        counts = torch.bincount(kg, minlength=C).tolist()
        z = torch.empty(key.shape[0], self.ivector_dim, dtype=x.dtype, device=x.device)
        s = 0
        for c, n in enumerate(counts):
            if n:
                torch.mm(fx[s:s + n], self.SiM[c], out=z[s:s + n])
                s += n
        dL = torch.zeros(R, self.ivector_dim, dtype=x.dtype, device=x.device).index_add_(0, kr, z)
        return dG.reshape(R, C), dL, nrows

    def extract(self, b: UttBatch, rows_per_chunk: int = 512) -> list[np.ndarray]:
        """i-vector rows (ceil(T/period), D) float32 for every utterance of the batch (whole speakers)."""
        o = self.opts
        D = self.ivector_dim
        dG, L, nrows = self.row_stats(b)
        # Cumulative stats per utterance with speaker carry-over (loop over utterances, not frames);
        # everything is linear in the occupancies, so LimitFrames' scaling is applied to G and L.
        limit = o.max_remembered_frames * o.posterior_scale
        nr = nrows.tolist()
        G = torch.empty_like(dG)
        start = 0
        prev_spk = None
        G0 = torch.zeros(dG.shape[1], dtype=dG.dtype, device=dG.device)
        L0 = torch.zeros(D, dtype=L.dtype, device=L.device)
        for u, spk in enumerate(b.spks):
            if spk != prev_spk:
                prev_spk = spk
                G0 = torch.zeros_like(G0)
                L0 = torch.zeros_like(L0)
            s, e = start, start + nr[u]
            if e == s:                                  # empty utterance: speaker state unchanged
                continue
            torch.cumsum(dG[s:e], 0, out=G[s:e])
            G[s:e] += G0
            L[s:e] = torch.cumsum(L[s:e], 0) + L0
            n_last = float(G[e - 1].sum())
            scale = limit / n_last if n_last > limit else 1.0
            G0, L0 = G[e - 1] * scale, L[e - 1] * scale
            start = e
        n = G.sum(1)
        ps = torch.clamp(n, min=o.max_count) / o.max_count if o.max_count > 0 else torch.ones_like(n)
        # every row's quadratic term comes from its own G row: chunks of rows_per_chunk rows keep them in cache
        w = torch.empty_like(L)
        R = w.shape[0]
        Qbuf = torch.empty(min(R, rows_per_chunk), self.layout.size, dtype=L.dtype, device=L.device)  # reused
        for s in range(0, R, rows_per_chunk):
            e = min(s + rows_per_chunk, R)
            Q = torch.mm(G[s:e], self.Ublocks, out=Qbuf[:e - s])         # (rows, layout size): Σ_c G_ic U_c
            self.layout.add_diagonal_(Q, ps[s:e])
            w[s:e], ok = spd_solve_blocks(self.layout.blocks(Q), L[s:e])
            if not bool(ok.all()):
                raise RuntimeError(f"i-vector precision not positive definite in batch starting at {b.utts[0]!r}")
        return [a.cpu().numpy() for a in torch.split(w, nr)]

    def extract_batches(self, batches: Iterable[UttBatch], nj: int = 1) -> Iterator[tuple[UttBatch, list[np.ndarray]]]:
        """(batch, :meth:`extract` of it) for each batch, in order.

        ``nj`` > 1 on CPU: ``nj`` batches at a time on ``nj`` worker threads with one torch thread each, as
        Kaldi's ``--nj`` parallel jobs (batches hold whole speakers, so they are independent); small
        batched kernels scale better this way than with torch's intra-op threads.  At most 2·nj batches
        are in memory.  The torch thread count of the calling thread is restored afterwards.
        """
        if nj <= 1 or self.dev.type != "cpu":
            for b in batches:
                yield b, self.extract(b)
            return
        threads = torch.get_num_threads()
        pending: deque = deque()
        try:
            with ThreadPoolExecutor(nj, initializer=torch.set_num_threads, initargs=(1,)) as pool:
                for b in batches:
                    pending.append((b, pool.submit(self.extract, b)))
                    if len(pending) >= 2 * nj:
                        b0, f = pending.popleft()
                        yield b0, f.result()
                while pending:
                    b0, f = pending.popleft()
                    yield b0, f.result()
        finally:
            torch.set_num_threads(threads)


def extract_ivectors_online(data: str | os.PathLike, extractor_dir: str | os.PathLike, ivector_dir: str | os.PathLike,
                            opts: OnlineIvectorOptions = OnlineIvectorOptions(), utts_per_spk_max: int = -1,
                            device: str = "auto", batch_frames: int = 20_000, nj: int = 1, compress: bool = False) -> Path:
    """``extract_ivectors_online.sh``: writes ``ivector_online.scp`` (+ ``ivector_online.1.ark``) and ``ivector_period``;
    ``compress``: as Kaldi compressed matrices (the script's ``--compress``, ser.io.compressed)."""
    d = load_data(data)
    out = Path(ivector_dir)
    out.mkdir(parents=True, exist_ok=True)
    ex = OnlineIvectorExtractor.from_dir(extractor_dir, opts, device)
    if utts_per_spk_max > 0:
        d.utt2spk = modify_speaker_info(d.utt2spk, utts_per_spk_max=utts_per_spk_max)
    spk_utts = speaker_order(d)
    n = frames = 0
    t0 = time.perf_counter()
    with ArkScpWriter(out / "ivector_online.1.ark", out / "ivector_online.scp.unsorted", compress=compress) as w:
        for b, ivs in ex.extract_batches(iter_speaker_batches(d, spk_utts, batch_frames, ex.dev, progress="ivectors"), nj):
            for u, rows in zip(b.utts, ivs):
                w.write(u, rows)
                n += 1
            frames += b.num_frames
    secs = time.perf_counter() - t0
    # scp sorted by utterance, as Kaldi tables
    lines = sorted((out / "ivector_online.scp.unsorted").read_text().splitlines())
    atomic_write_text(out / "ivector_online.scp", "".join(x + "\n" for x in lines))
    (out / "ivector_online.scp.unsorted").unlink()
    atomic_write_text(out / "ivector_period", f"{opts.ivector_period}\n")
    log.info("extracted online i-vectors for %d utterances into %s: %.1f s of audio in %.1f s (%.0fx real time, "
             "reading features included; nj=%d, device %s)", n, out, frames / 100, secs, frames / 100 / max(secs, 1e-9),
             nj, ex.dev)
    return out / "ivector_online.scp"


def utterance_ivectors(data: str | os.PathLike, extractor_dir: str | os.PathLike,
                       device: str = "auto") -> dict[str, np.ndarray]:
    """One i-vector per utterance, the last online row (it has seen the whole utterance up to its
    last ``ivector_period`` point), each utterance extracted as its own speaker (no carry-over, so
    no speaker information leaks between verification trials)."""
    d = load_data(data)
    ex = OnlineIvectorExtractor.from_dir(extractor_dir, device=device)
    out = {}
    for b in iter_speaker_batches(d, [(u, [u]) for u in d.utts], 50_000, ex.dev):
        for u, rows in zip(b.utts, ex.extract(b)):
            out[u] = rows[-1]
    return out
