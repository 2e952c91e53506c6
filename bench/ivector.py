"""Online i-vector extraction speed (× real time), one i-vector every 10 frames.

Two kinds of input:
- default: paper-size models with random parameters (512 Gaussians, 40-dim features = 40-dim MFCC
  spliced ±3 → PCA 40, 100-dim i-vectors) on random features: i.i.d. frames (a worst case: ~35
  distinct Gaussians per 10-frame row) or ``--smooth`` time-correlated frames (~18 per row);
- ``--extractor-dir DIR --data DIR``: a trained extractor (``exp/nnet3/extractor``) on the features of a
  data dir (real speech selects far fewer Gaussians per row, ~7-10).
Speed depends on that count because the quadratic term is accumulated sparsely; the script prints it.

Reference measured in the same run: a per-frame loop written like Kaldi's ``OnlineIvectorFeature``
(numpy float64, posteriors per frame, a solve every 10 frames) on a short subset; the script prints both
speeds, their ratio and the largest difference between the two on that subset.  Features are read
into memory before timing (no disk I/O is timed).

    .venv/bin/python bench/ivector.py [--seconds 600] [--device cpu|cuda|all] [--threads N] [--nj N] [--repeats 3]
                                      [--smooth | --extractor-dir exp/nnet3/extractor --data data/tedlium_dev]

Times are the best of ``--repeats`` passes (the machine may be shared).

``--train-data DIR``: instead, the training of stage 4 (run_ivector_common.sh: UBM on every 4th
utterance, extractor on all) on the features of DIR replicated ``--replicate`` times (new speaker and
utterance ids, the same feature arks), once for each ``--train-nj`` (jobs through ``python -m ser.jobs``,
local backend, one thread each; the UBM's init job, which runs alone, nj threads): wall time of the UBM and the extractor, peak RSS of each kind of job
(the logs' Accounting lines), and how far the models of the other nj are from the first's.

    .venv/bin/python bench/ivector.py --train-data data/tedlium_train_sp --replicate 8 --train-nj 1 2 \
        [--num-gauss 128 --ivector-dim 100 --num-iters 10 --ubm-num-frames 200000] [--workdir exp/bench_ivector]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

if "--threads" in sys.argv[:-1]:   # numpy's BLAS reads its thread count at import: keep the reference on N threads
    for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(_v, sys.argv[sys.argv.index("--threads") + 1])

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ser.ivector.diag_ubm import DiagGmm, UbmFeatures  # noqa: E402
from ser.ivector.extractor import IvectorExtractor  # noqa: E402
from ser.ivector.features import (OnlineCmvnOptions, SpliceOptions, UttBatch, iter_speaker_batches,  # noqa: E402
                                  load_data, speaker_order)
from ser.ivector.online import OnlineIvectorExtractor, OnlineIvectorOptions  # noqa: E402

C, F, D, RAW = 512, 40, 100, 40


def models(seed: int = 0):
    rng = np.random.default_rng(seed)
    means = rng.normal(size=(C, F))
    M = rng.normal(size=(C, F, D)) * 0.1
    M[:, :, 0] = means / 100.0
    ie = IvectorExtractor(torch.tensor(M), torch.diag_embed(torch.tensor(rng.uniform(0.5, 2, (C, F)))),
                          torch.full((C,), 1.0 / C, dtype=torch.float64), 100.0)
    ubm = DiagGmm(torch.full((C,), 1.0 / C, dtype=torch.float64), torch.tensor(means),
                  torch.tensor(rng.uniform(0.5, 2, (C, F))))
    mat = torch.tensor(rng.normal(size=(F, RAW * 7 + 1)) / np.sqrt(RAW * 7), dtype=torch.float32)
    g = torch.zeros(2, RAW + 1, dtype=torch.float64)
    g[0, RAW] = 1.0
    return ie, ubm, UbmFeatures(mat, g, SpliceOptions(), OnlineCmvnOptions())


def batch(seconds: float, utt_seconds: float = 6.0, utts_per_spk: int = 5, seed: int = 1,
          smooth: bool = False) -> UttBatch:
    """Random features: independent frames, or (``smooth``) segments of 5-15 frames plus small noise,
    correlated in time like speech, so fewer distinct Gaussians per 10-frame row."""
    rng = np.random.default_rng(seed)
    n_utt = max(1, int(round(seconds / utt_seconds)))
    lens = rng.integers(int(utt_seconds * 50), int(utt_seconds * 150) + 1, n_utt)
    N = int(lens.sum())
    if smooth:
        x = np.repeat(rng.normal(size=(N // 5 + 1, RAW)), rng.integers(5, 16, N // 5 + 1), axis=0)[:N]
        x = x + 0.2 * rng.normal(size=(N, RAW))
    else:
        x = rng.normal(size=(N, RAW))
    feats = torch.tensor(x, dtype=torch.float32)
    spks = [f"s{i // utts_per_spk}" for i in range(n_utt)]
    return UttBatch([f"u{i}" for i in range(n_utt)], spks, feats, torch.tensor(lens))


def data_batches(data: str, seconds: float, batch_seconds: float) -> list[UttBatch]:
    """Whole speakers of a data dir, about ``seconds`` of audio in batches of about ``batch_seconds``."""
    d = load_data(data)
    out, n = [], 0
    for b in iter_speaker_batches(d, speaker_order(d), int(batch_seconds * 100), torch.device("cpu")):
        out.append(b)
        n += b.num_frames
        if n >= seconds * 100:
            break
    return out


def reference(ie, ubm, ff, b: UttBatch, o: OnlineIvectorOptions) -> list[np.ndarray]:
    """Kaldi-style per-frame loop (numpy float64): CMN by window sums, per-frame posteriors, solve per row."""
    RAW, D = b.feats.shape[1], ie.ivector_dim
    lc, rc = ff.splice_opts.left_context, ff.splice_opts.right_context
    mat = ff.mat.double().numpy()
    w, mu, var = ubm.weights.numpy(), ubm.means.numpy(), ubm.vars.numpy()
    SiM = (ie.Sigma_inv @ ie.M).numpy()
    U = (ie.M.transpose(1, 2) @ ie.Sigma_inv @ ie.M).numpy()
    gmean = (ff.gstats[0, :RAW] / ff.gstats[0, RAW]).numpy()
    cw, gf = ff.cmvn_opts.cmn_window, ff.cmvn_opts.global_frames
    out = []
    for x in b.split(b.feats):          # (speaker carry-over omitted: timing reference only)
        x = x.double().numpy()
        T = len(x)
        cs = np.vstack([np.zeros(RAW), np.cumsum(x, 0)])
        lin, quad, rows = np.zeros(D), np.zeros((D, D)), []
        idx = np.clip(np.arange(T)[:, None] + np.arange(-lc, rc + 1)[None], 0, T - 1)
        cmn = np.empty_like(x)
        for t in range(T):
            lo = max(0, t - cw + 1)
            c = t + 1 - lo
            k = min(cw - c, gf)
            cmn[t] = x[t] - (cs[t + 1] - cs[lo] + k * gmean) / (c + k)
        for t in range(T):
            yp = cmn[idx[t]].reshape(-1) @ mat[:, :-1].T + mat[:, -1]
            yx = x[idx[t]].reshape(-1) @ mat[:, :-1].T + mat[:, -1]
            ll = np.log(w) - 0.5 * (np.log(2 * np.pi * var) + (yp - mu) ** 2 / var).sum(1)
            top = np.argpartition(-ll, o.num_gselect)[:o.num_gselect]
            top = top[np.argsort(-ll[top])]
            p = np.exp(ll[top] - ll[top].max())
            p /= p.sum()
            keep = p >= o.min_post
            keep[0] = True
            p = p[keep] / p[keep].sum() * o.posterior_scale
            for c_, pc in zip(top[keep], p):
                lin += pc * SiM[c_].T @ yx
                quad += pc * U[c_]
            if t % o.ivector_period == 0:
                L = lin.copy()
                L[0] += ie.prior_offset
                wv = np.linalg.solve(np.eye(D) + quad, L)
                wv[0] -= ie.prior_offset
                rows.append(wv)
        out.append(np.array(rows))
    return out


def replicate(data: str, out: Path, n: int) -> Path:
    """``data`` with every speaker and utterance ``n`` times (ids ``r<k>-...``), pointing at the same features."""
    from ser.io.datadir import DataDir, write_kv
    d = load_data(data)
    utt2spk = {f"r{k}-{u}": f"r{k}-{s}" for k in range(n) for u, s in d.utt2spk.items()}
    DataDir(utt2spk=utt2spk).write(out, replace=True)
    write_kv(out / "feats.scp", {f"r{k}-{u}": d.feats[u] for k in range(n) for u in d.utts})
    return out


def job_accounting(logdir: Path) -> tuple[dict[str, float], float, float]:
    """From the jobs' Accounting lines: the largest ``maxrss`` (GiB) of each kind of job (init, acc, stats),
    the CPU seconds of all jobs, and the critical path: the sum over the steps (init, stats, acc.<iter>)
    of their slowest job's CPU seconds (the wall time on an otherwise idle machine with a core per job)."""
    import re
    rss: dict[str, float] = {}
    step_cpu: dict[str, float] = {}
    total = 0.0
    for p in logdir.glob("*.log"):
        m = re.search(r"maxrss=(\d+)KB cpu=([\d.]+)s", p.read_text(errors="replace"))
        if m:
            kind, step = p.name.split(".")[0], p.name.rsplit(".", 2)[0]
            rss[kind] = max(rss.get(kind, 0.0), int(m.group(1)) / 2 ** 20)
            step_cpu[step] = max(step_cpu.get(step, 0.0), float(m.group(2)))
            total += float(m.group(2))
    return rss, total, sum(step_cpu.values())


def train_bench(a: argparse.Namespace) -> None:
    from ser.io.datadir import DataDir
    from ser.ivector.diag_ubm import train_diag_ubm
    from ser.ivector.extractor import train_ivector_extractor
    from ser.ivector.parallel import Runner
    from ser.ivector.pca import get_pca_transform
    torch.set_num_threads(1)
    work = Path(a.workdir)
    data = replicate(a.train_data, work / "data", a.replicate)
    d = DataDir.load(data)
    subset = d.subset(d.utts[::4]).write(work / "data_subset", replace=True)  # awk 'NR % 4 == 1'
    frames = sum(int(m.shape[0]) for b in iter_speaker_batches(d, speaker_order(d), 10 ** 6, torch.device("cpu"))
                 for m in [b.feats])
    print(f"{a.train_data} x{a.replicate}: {len(d.utts)} utterances, {len(d.spk2utt)} speakers, {frames} frames")
    t0 = time.perf_counter()
    get_pca_transform(subset, work / "pca", dim=40, device="cpu")
    print(f"PCA (one process, not parallel): {time.perf_counter() - t0:.1f} s")
    models = {}
    for nj in a.train_nj:
        runner = Runner(f"{sys.executable} -m ser.jobs --backend local --max-jobs-run {nj}", 1)
        t0, c0 = time.perf_counter(), time.process_time()
        init_runner = Runner(runner.cmd, nj)  # as steps/online/train_diag_ubm.sh: the init job alone, nj threads
        ubm, _ = train_diag_ubm(subset, a.num_gauss, work / "pca", work / f"ubm_nj{nj}", num_frames=a.ubm_num_frames,
                                device="cpu", nj=nj, runner=runner, init_runner=init_runner)
        t1 = time.perf_counter()
        ie, hist = train_ivector_extractor(data, work / f"ubm_nj{nj}", work / f"ie_nj{nj}", ivector_dim=a.ivector_dim,
                                           num_iters=a.num_iters, device="cpu", nj=nj, runner=runner)
        t2, driver_cpu = time.perf_counter(), time.process_time() - c0
        models[nj] = (ubm, ie)
        (rss_u, cpu_u, path_u), (rss_e, cpu_e, path_e) = (job_accounting(work / f"ubm_nj{nj}" / "log"),
                                                          job_accounting(work / f"ie_nj{nj}" / "log"))
        print(f"nj {nj}: wall: UBM {t1 - t0:.1f} s, extractor {t2 - t1:.1f} s, total {t2 - t0:.1f} s; "
              f"CPU: jobs {cpu_u + cpu_e:.1f} s, critical path {path_u + path_e:.1f} s + driver {driver_cpu:.1f} s "
              f"= {path_u + path_e + driver_cpu:.1f} s; auxf {hist[-1]:.4f}; peak RSS per job (GiB): "
              + ", ".join(f"ubm {k} {v:.2f}" for k, v in sorted(rss_u.items())) + ", "
              + ", ".join(f"extractor {k} {v:.2f}" for k, v in sorted(rss_e.items())), flush=True)
    first = a.train_nj[0]
    for nj in a.train_nj[1:]:
        (u0, e0), (u1, e1) = models[first], models[nj]
        du = max(float((getattr(u1, k) - getattr(u0, k)).abs().max() / getattr(u0, k).abs().max())
                 for k in ("weights", "means", "vars"))
        de = max(float((getattr(e1, k) - getattr(e0, k)).abs().max() / getattr(e0, k).abs().max())
                 for k in ("M", "Sigma_inv"))
        print(f"nj {nj} vs nj {first}: largest relative difference UBM {du:.1e}, extractor {de:.1e}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=600.0, help="audio seconds for the vectorised extractor")
    ap.add_argument("--smooth", action="store_true",
                    help="time-correlated features (speech-like: fewer distinct Gaussians per row) instead of i.i.d.")
    ap.add_argument("--extractor-dir", help="a trained extractor (with --data) instead of random models")
    ap.add_argument("--data", help="data dir whose features are used (with --extractor-dir)")
    ap.add_argument("--ref-seconds", type=float, default=6.0, help="audio seconds for the per-frame reference")
    ap.add_argument("--batch-seconds", type=float, default=100.0, help="audio seconds per batch")
    ap.add_argument("--device", default="all", help="cpu, cuda or all (cpu + cuda if available)")
    ap.add_argument("--threads", type=int, default=0, help="torch threads of the serial run (0: torch default)")
    ap.add_argument("--nj", type=int, default=os.cpu_count() or 1,
                    help="also time N parallel jobs of one thread each (extract_ivectors_online.sh --nj); default: cores")
    ap.add_argument("--repeats", type=int, default=3, help="timed passes; the best one is reported")
    ap.add_argument("--train-data", help="benchmark the training on this data dir's features instead")
    ap.add_argument("--replicate", type=int, default=8, help="--train-data: copies of every speaker")
    ap.add_argument("--train-nj", type=int, nargs="+", default=[1, 2], help="--train-data: numbers of jobs")
    ap.add_argument("--num-gauss", type=int, default=128)
    ap.add_argument("--ivector-dim", type=int, default=100)
    ap.add_argument("--num-iters", type=int, default=10)
    ap.add_argument("--ubm-num-frames", type=int, default=200000)
    ap.add_argument("--workdir", default="exp/bench_ivector")
    a = ap.parse_args()
    if a.train_data:
        return train_bench(a)
    if a.threads:
        torch.set_num_threads(a.threads)
    if (a.extractor_dir is None) != (a.data is None):
        ap.error("--extractor-dir and --data go together")
    o = OnlineIvectorOptions()
    if a.data:
        d = Path(a.extractor_dir)
        ie, ubm = IvectorExtractor.load(d / "final.ie.pt"), DiagGmm.load(d / "final.dubm.pt")
        ff = UbmFeatures.from_dir(d)
        real = data_batches(a.data, a.seconds, a.batch_seconds)
        first = real[0]   # reference: the first utterance as its own speaker
        rb = UttBatch(first.utts[:1], first.spks[:1], first.feats[:int(first.lengths[0])], first.lengths[:1])
        print(f"{a.extractor_dir}: {ie.num_gauss} Gaussians, {ie.feat_dim}-dim features, {ie.ivector_dim}-dim "
              f"i-vectors; features of {a.data}")
    else:
        ie, ubm, ff = models()
        rb = batch(a.ref_seconds, utt_seconds=a.ref_seconds, utts_per_spk=1, seed=2)
        print(f"random models: {C} Gaussians, {F}-dim features, {D}-dim i-vectors; "
              f"{'time-correlated' if a.smooth else 'i.i.d.'} random features")

    # reference (a short batch, one speaker per utterance)
    t_ref = float("inf")
    for _ in range(max(1, a.repeats)):
        t0 = time.perf_counter()
        ref = reference(ie, ubm, ff, rb, o)
        t_ref = min(t_ref, time.perf_counter() - t0)
    ref_rt = rb.num_frames / 100.0 / t_ref
    print(f"reference per-frame loop (numpy): {rb.num_frames / 100:.1f} s audio in {t_ref:.2f} s = {ref_rt:.1f}x RT")

    devices = ["cpu", "cuda"] if a.device == "all" else [a.device]
    for dev in devices:
        if dev == "cuda" and not torch.cuda.is_available():
            print("cuda: not available")
            continue
        ex = OnlineIvectorExtractor(ie, ubm, ff, o, dev)
        got = ex.extract(UttBatch(rb.utts, rb.spks, rb.feats.to(dev), rb.lengths.to(dev)))
        diff = max(float(np.abs(g - r).max()) for g, r in zip(got, ref))
        if a.data:
            batches = real
        else:
            nb = max(1, int(round(a.seconds / a.batch_seconds)))
            batches = [batch(a.batch_seconds, seed=10 + i, smooth=a.smooth) for i in range(nb)]
        batches = [UttBatch(b.utts, b.spks, b.feats.to(dev), b.lengths.to(dev)) for b in batches]
        ex.extract(batches[0])  # warm-up
        dG = ex.row_stats(batches[0])[0]
        print(f"distinct Gaussians per 10-frame row: {float((dG > 0).sum(1).double().mean()):.1f}")
        audio = sum(b.num_frames for b in batches) / 100.0
        runs = [(f"threads={torch.get_num_threads()}", 1)]
        if dev == "cpu" and a.nj > 1:
            runs.append((f"nj={a.nj} jobs of 1 thread", a.nj))
        for what, nj in runs:
            dt = float("inf")
            for _ in range(max(1, a.repeats)):
                if dev == "cuda":
                    torch.cuda.synchronize()
                t0 = time.perf_counter()
                for _b in ex.extract_batches(batches, nj):
                    pass
                if dev == "cuda":
                    torch.cuda.synchronize()
                dt = min(dt, time.perf_counter() - t0)
            rt = audio / dt
            print(f"vectorised {dev} ({what}): {audio:.0f} s audio in {len(batches)} batches in {dt:.2f} s = {rt:.0f}x RT "
                  f"({rt / ref_rt:.0f}x the reference); max |diff| vs reference {diff:.2e}")


if __name__ == "__main__":
    main()
