"""A tiny emotion system for the inference tests: wav files, MFCC options, an i-vector
extractor, a grafted network (``final.pt`` as stage 7 writes it), and its export.

Nothing is trained: the extractor is Kaldi's initialisation from a UBM of the tiny data's own
features, the head is random with BatchNorm statistics of a few passes, which is all the
numerical comparisons need.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from emotion_data import CLASSES, FEAT_DIM, IVEC_DIM, tiny_model
from ser.emotion.graft import make_grafted_model
from ser.features.mfcc import MfccOptions, compute_mfcc
from ser.infer.export import ExportInfo, export_model
from ser.io.torch_io import save_torch
from ser.ivector.diag_ubm import DiagGmm
from ser.ivector.extractor import IvectorExtractor
from ser.ivector.features import OnlineCmvnOptions, SpliceOptions, UttBatch, splice, apply_transform

PCA_DIM, NUM_GAUSS = 10, 4
MFCC_CONF = "--use-energy=false\n--num-ceps=13\n--num-mel-bins=23\n"


def voice(seconds: float, seed: int, fs: int = 16000) -> np.ndarray:
    """A harmonic signal with a gliding pitch and some noise, float in [-1, 1]."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * fs)) / fs
    f0 = 120 + 80 * rng.random() + 30 * np.sin(2 * np.pi * (0.5 + rng.random()) * t)
    phase = 2 * np.pi * np.cumsum(f0) / fs
    x = sum(np.sin(k * phase) / k for k in range(1, 6)) * (0.5 + 0.5 * np.sin(2 * np.pi * 1.5 * t) ** 2)
    return (0.2 * x / np.abs(x).max() + 0.01 * rng.standard_normal(t.size)).astype(np.float32)


def write_wav(path: Path, x: np.ndarray, fs: int = 16000) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, x, fs, subtype="PCM_16")
    return path


def write_extractor(out: Path, signals: list[np.ndarray], opts: MfccOptions) -> Path:
    """An online i-vector extractor dir fitted (by initialisation only) to the signals' MFCC."""
    g = torch.Generator().manual_seed(0)
    feats = [compute_mfcc([torch.from_numpy(x * 32768)], opts, generator=g)[0] for x in signals]
    allf = torch.cat(feats).double()
    stats = torch.zeros(2, FEAT_DIM + 1, dtype=torch.float64)
    stats[0, :-1], stats[1, :-1], stats[0, -1] = allf.sum(0), (allf * allf).sum(0), allf.shape[0]
    d_in = FEAT_DIM * 7
    mat = torch.cat([torch.randn(PCA_DIM, d_in, generator=g) / d_in ** 0.5, torch.zeros(PCA_DIM, 1)], 1)
    b = UttBatch(["a"], ["a"], torch.cat(feats), torch.tensor([allf.shape[0]]))
    y = apply_transform(mat, splice(b, b.feats - allf.mean(0).float(), SpliceOptions())).double()
    ubm = DiagGmm(torch.full((NUM_GAUSS,), 1.0 / NUM_GAUSS, dtype=torch.float64),
                  y[torch.randperm(y.shape[0], generator=g)[:NUM_GAUSS]].clone(),
                  y.var(0).expand(NUM_GAUSS, -1).clone())
    out.mkdir(parents=True, exist_ok=True)
    ubm.save(out / "final.dubm.pt")
    IvectorExtractor.init_from_diag_ubm(ubm, IVEC_DIM, seed=0).save(out / "final.ie.pt")
    save_torch({"mat": mat}, out / "final.mat.pt")
    save_torch({"stats": stats}, out / "global_cmvn.stats.pt")
    (out / "splice_opts").write_text(SpliceOptions().to_conf())
    (out / "online_cmvn.conf").write_text(OnlineCmvnOptions().to_conf())
    return out


def write_final_pt(path: Path, seed: int = 0) -> Path:
    """A grafted network on tdnnf12 as ser.emotion.trainer saves it (random head with stats)."""
    m = make_grafted_model(tiny_model(seed), "tdnnf12", 16, len(CLASSES), 0.25, False, seed)
    g = torch.Generator().manual_seed(seed)
    m.head.train()
    with torch.no_grad():
        for _ in range(3):
            m.head(torch.randn(200, m.head.affine.in_features, generator=g))
    m.eval()
    path.parent.mkdir(parents=True, exist_ok=True)
    save_torch(dict(m.to_dict(), valid={"ua": 0.5, "wa": 0.5, "epoch": 1}, labels=list(CLASSES)), path)
    return path


def make_system(root: Path, num_wavs: int = 4) -> dict[str, Path]:
    """wavs, a data dir over them (wav.scp, utt2spk, utt2emo), the extractor, final.pt and the
    export.  Returns the paths by name."""
    signals = [voice(1.2 + 0.6 * i, seed=i) for i in range(num_wavs)]
    wavs = [write_wav(root / "wav" / f"rec{i}.wav", x) for i, x in enumerate(signals)]
    (root / "mfcc.conf").write_text(MFCC_CONF)
    ext = write_extractor(root / "extractor", signals, MfccOptions.from_conf(root / "mfcc.conf"))
    final = write_final_pt(root / "exp" / "sys" / "all" / "final.pt")
    data = root / "data"
    data.mkdir()
    utts = [f"spk{i % 2}-utt{i}" for i in range(num_wavs)]
    (data / "wav.scp").write_text("".join(f"{u} {w}\n" for u, w in sorted(zip(utts, wavs))))
    (data / "utt2spk").write_text("".join(f"{u} {u.split('-')[0]}\n" for u in sorted(utts)))
    emo = {u: CLASSES[i % len(CLASSES)] for i, u in enumerate(utts)}
    (data / "utt2emo").write_text("".join(f"{u} {emo[u]}\n" for u in sorted(utts)))
    export = export_model(final, root / "mfcc.conf", ext, root / "exp" / "sys" / "export",
                          ExportInfo("sys", corpus="tiny", set="tiny", protocol="session"))
    return {"root": root, "wavs": wavs, "data": data, "extractor": ext, "final": final, "export": export,
            "mfcc_conf": root / "mfcc.conf"}
