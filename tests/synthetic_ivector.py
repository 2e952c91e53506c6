"""Synthetic feature data dirs with known speakers, for the i-vector tests (test data, not library code).

Frames come from a shared "phonetic" GMM (random means, time-correlated component sequences so
splicing sees structure); each speaker adds its own offset and a per-speaker diagonal scaling, so
speaker identity lives in the feature distribution the way an i-vector can capture it.  Not a model
of speech; only a deterministic (seeded) source of Kaldi data dirs with ``feats.scp``.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ser.io.datadir import DataDir
from ser.io.tables import ArkScpWriter


def make_synthetic_datadir(path: str | os.PathLike, num_spk: int = 6, utts_per_spk: int = 6, dim: int = 13,
                           min_frames: int = 80, max_frames: int = 300, num_phones: int = 12,
                           spk_scale: float = 1.0, seed: int = 0) -> DataDir:
    rng = np.random.default_rng(seed)
    path = Path(path)
    phone_means = rng.normal(0, 3.0, (num_phones, dim))
    phone_std = rng.uniform(0.5, 1.2, (num_phones, dim))
    utt2spk: dict[str, str] = {}
    feats: dict[str, np.ndarray] = {}
    for s in range(num_spk):
        spk = f"spk{s:02d}"
        offset = rng.normal(0, spk_scale, dim)
        scale = np.exp(rng.normal(0, 0.15 * spk_scale, dim))
        for u in range(utts_per_spk):
            utt = f"{spk}-utt{u:02d}"
            T = int(rng.integers(min_frames, max_frames + 1))
            # piecewise-constant phone sequence, segments of 5..15 frames
            seq = []
            while len(seq) < T:
                seq += [int(rng.integers(num_phones))] * int(rng.integers(5, 16))
            ph = np.array(seq[:T])
            x = phone_means[ph] + phone_std[ph] * rng.normal(size=(T, dim))
            feats[utt] = ((x * scale + offset) + 0.3 * np.sin(np.arange(T) / 7.0)[:, None]).astype(np.float32)
            utt2spk[utt] = spk
    DataDir(utt2spk=utt2spk).write(path)  # replaces the directory: write it before the features
    with ArkScpWriter(path / "feats.ark", path / "feats.scp") as w:
        for utt in sorted(feats):
            w.write(utt, feats[utt])
    return DataDir.load(path)
