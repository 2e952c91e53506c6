"""Tiny emotion data for the stage-7 tests: a small TDNN-F and an IEMOCAP-like set on disk.

Features are random with a class-dependent mean (so a head can learn something), written as
Kaldi arks with their scp, with online-i-vector-like tables (one row per 10 frames).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ser.io.datadir import DataDir
from ser.io.tables import ArkScpWriter
from ser.nnet.tdnnf import TdnnfConfig, TdnnfModel
from ser.nnet.model_io import save_chain_model

CLASSES = ["ang", "hap", "neu", "sad"]
FEAT_DIM, IVEC_DIM = 13, 8


def tiny_config() -> TdnnfConfig:
    """The 13-layer tdnn_1g architecture at toy widths (model context still 28/28)."""
    return TdnnfConfig.mini(num_pdfs=12, feat_dim=FEAT_DIM, ivector_dim=IVEC_DIM, tdnn_dim=24,
                            tdnnf_dim=24, bottleneck_dim=8, prefinal_l_dim=12,
                            prefinal_big_dim=24, prefinal_small_dim=12)


def tiny_model(seed: int = 0) -> TdnnfModel:
    """A random tiny model with stored BatchNorm statistics (as a pretrained one has)."""
    g = torch.Generator().manual_seed(seed)
    m = TdnnfModel(tiny_config(), generator=g)
    d = 3 * FEAT_DIM + IVEC_DIM  # a fixed input transform other than the identity, as an estimated one
    m.set_preconditioning(torch.eye(d) + 0.1 * torch.randn(d, d, generator=g), 0.1 * torch.randn(d, generator=g))
    m.train()
    with torch.no_grad():
        for _ in range(3):
            m(torch.randn(4, 120, FEAT_DIM, generator=g), torch.randn(4, IVEC_DIM, generator=g))
    m.eval()
    return m


def save_tiny_model(path: Path, seed: int = 0) -> Path:
    save_chain_model(path, tiny_model(seed))
    return path


def write_tiny_set(root: Path, sessions: int = 3, utts_per_speaker: int = 8,
                   seed: int = 0) -> tuple[Path, Path, Path]:
    """``root/data/iemocap_tiny`` (feats, utt2emo, utt2session) and two i-vector dirs
    (per speaker, per utterance) under ``root/exp/nnet3``.  Returns the three paths."""
    rng = np.random.default_rng(seed)
    data, ivs, ivu = root / "data/iemocap_tiny", root / "exp/nnet3/iv_spk", root / "exp/nnet3/iv_utt"
    utt2spk, emo, sess, nfr = {}, {}, {}, {}
    feats, ivecs = {}, {}
    means = rng.normal(0, 1.0, (len(CLASSES), FEAT_DIM))
    for s in range(1, sessions + 1):
        for g in "FM":
            spk = f"Ses{s:02d}{g}"
            for k in range(utts_per_speaker):
                utt = f"{spk}-Ses{s:02d}F_impro01_{g}{k:03d}"
                c = k % len(CLASSES)
                t = int(rng.integers(30, 140))
                utt2spk[utt], emo[utt], sess[utt], nfr[utt] = spk, CLASSES[c], f"Ses{s:02d}", str(t)
                feats[utt] = (means[c] + rng.normal(0, 1.0, (t, FEAT_DIM))).astype(np.float32)
                ivecs[utt] = rng.normal(0, 1.0, ((t + 9) // 10, IVEC_DIM)).astype(np.float32)
    data.mkdir(parents=True)
    with ArkScpWriter(data / "feats.ark", data / "feats.scp") as w:
        for u in sorted(feats):
            w.write(u, feats[u])
    scp = dict(line.split(None, 1) for line in (data / "feats.scp").read_text().splitlines())
    DataDir(utt2spk=utt2spk, feats=scp, extras={"utt2emo": emo, "utt2session": sess,
                                                "utt2num_frames": nfr}).write(data)
    for d in (ivs, ivu):
        d.mkdir(parents=True)
        with ArkScpWriter(d / "ivector_online.ark", d / "ivector_online.scp") as w:
            for u in sorted(ivecs):
                w.write(u, ivecs[u] if d == ivu else ivecs[u] + 0.5)
        (d / "ivector_period").write_text("10\n")
    return data, ivs, ivu
