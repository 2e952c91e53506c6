"""PCA input transform for the i-vector pipeline (splice ±3, online CMN, PCA to 40).

Mirrors ``egs/wsj/s5/steps/online/nnet2/get_pca_transform.sh`` and ``src/bin/est-pca.cc``:
features = ``apply-cmvn-online`` (global stats only, no speaker carry-over) → ``splice-feats`` →
``subsample-feats --n=<subsample>`` on at most ``--max-utts`` utterances (evenly spaced, as
``utils/subset_scp.pl``); ``est-pca`` takes the top-``dim`` eigenvectors of the centred covariance,
scales each row by 1/sqrt(eigenvalue) (``--normalize-variance``, floor 1e-15) and appends the offset
column −A·mean (``--normalize-mean``), giving a whitening affine transform ``[A | b]`` (dim × (in+1)).

This replaces the recipe's LDA+MLLT (deliberate deviation, DESIGN.md: LDA needs GMM alignments).
Defaults follow the recipe call (``--max-utts 10000 --subsample 2``), not the script's (5000 / 5).

Output directory:
  final.mat.pt        {"mat": float32 (dim, in+1), "mean": float64 (in,), "eigenvalues": float64 (in,)}
  global_cmvn.stats.pt {"stats": float64 (2, feat_dim+1)} (Kaldi CMVN-stats layout, row 0 sums + count)
  splice_opts         "--left-context=3 --right-context=3"
  online_cmvn.conf    the online CMN options
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import torch

from ser.io.atomic import atomic_write_text
from ser.device import resolve_device
from ser.ivector.features import (OnlineCmvnOptions, SpliceOptions, evenly_spaced, global_cmvn_stats,
                                  iter_speaker_batches, load_data, online_cmn, speaker_order,
                                  splice, subsample_mask)
from ser.io.torch_io import save_torch

log = logging.getLogger(__name__)


def est_pca(sum_: torch.Tensor, sumsq: torch.Tensor, count: int, dim: int,
            normalize_variance: bool = True, normalize_mean: bool = True) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``est-pca`` from accumulated sums (float64).  Returns (mat (dim, in[+1]), mean, sorted eigenvalues)."""
    if count <= 0:
        raise ValueError("est-pca: no data accumulated")
    full = sum_.shape[0]
    if dim <= 0:
        dim = full
    if dim > full:
        raise ValueError(f"est-pca: final dimension {dim} is greater than feature dimension {full}")
    mean = sum_ / count
    cov = sumsq / count - torch.outer(mean, mean)
    cov = 0.5 * (cov + cov.T)
    s, P = torch.linalg.eigh(cov)
    order = torch.argsort(s, descending=True)
    s, P = s[order], P[:, order]
    T = P.T.clone()
    if normalize_variance:
        T = T / torch.sqrt(s.clamp(min=1e-15))[:, None]
    if normalize_mean:
        T = torch.cat([T, (-(T @ mean))[:, None]], dim=1)
    return T[:dim].to(torch.float32), mean, s


def get_pca_transform(data: str | os.PathLike, pca_dir: str | os.PathLike, dim: int = 40,
                      normalize_variance: bool = True, normalize_mean: bool = True,
                      splice_opts: SpliceOptions = SpliceOptions(),
                      cmvn_opts: OnlineCmvnOptions = OnlineCmvnOptions(), max_utts: int = 10000,
                      subsample: int = 2, device: str = "auto", batch_frames: int = 200_000) -> Path:
    dev = resolve_device(device)
    d = load_data(data)
    out = Path(pca_dir)
    out.mkdir(parents=True, exist_ok=True)
    gstats, nframes = global_cmvn_stats(d, dev)
    utts = evenly_spaced(d.utts, max_utts)
    spk_utts = speaker_order(d, utts)
    sum_ = sumsq = None
    count = 0
    for b in iter_speaker_batches(d, spk_utts, batch_frames, dev, progress="pca stats"):
        x = online_cmn(b, gstats, cmvn_opts, carry_speaker=False)
        x = splice(b, x, splice_opts)[subsample_mask(b, subsample)].double()
        if sum_ is None:
            sum_ = torch.zeros(x.shape[1], dtype=torch.float64, device=dev)
            sumsq = torch.zeros(x.shape[1], x.shape[1], dtype=torch.float64, device=dev)
        sum_ += x.sum(0)
        sumsq += x.T @ x
        count += x.shape[0]
    assert sum_ is not None and sumsq is not None
    mat, mean, eig = est_pca(sum_.cpu(), sumsq.cpu(), count, dim, normalize_variance, normalize_mean)
    log.info("est-pca: %d frames, kept %d of %d dims, %.1f%% of variance", count, mat.shape[0], mean.shape[0],
             100.0 * float(eig[:mat.shape[0]].sum() / eig.sum()))
    save_torch({"stats": gstats}, out / "global_cmvn.stats.pt")
    atomic_write_text(out / "splice_opts", splice_opts.to_conf())
    atomic_write_text(out / "online_cmvn.conf", cmvn_opts.to_conf())
    save_torch({"mat": mat, "mean": mean, "eigenvalues": eig}, out / "final.mat.pt")
    return out / "final.mat.pt"
