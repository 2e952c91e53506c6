#!/usr/bin/env python3
"""Speaker-verification EER of utterance i-vectors (cosine scoring, all same/different-speaker pairs).

Usage:
  local/ivector_eer.py --extractor-dir exp/nnet3/extractor data/iemocap          # extract offline-per-utterance
  local/ivector_eer.py --data data/iemocap exp/nnet3/ivectors_iemocap             # use existing online rows
  local/ivector_eer.py --synthetic-test                                           # self-check on synthetic speakers
  local/ivector_eer.py --extractor-dir exp/nnet3/extractor --lda-data data/tedlium_train_sp data/iemocap_all
                                    # + cosine after a speaker LDA trained on other speakers (Kaldi's usual back-end)

Utterance i-vector = the last online row (it has seen the whole utterance up to its last 10-frame point).
With a data dir, each utterance is extracted as its own speaker (no carry-over), so no speaker
information leaks between trials; rows from an existing ivector dir were usually extracted with speaker
carry-over, which makes the EER optimistic (a warning is printed).  Vectors are mean-centred and
length-normalised before cosine scoring.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ser.io.datadir import DataDir  # noqa: E402
from ser.io.tables import load_scp_matrices  # noqa: E402


def eer(scores: np.ndarray, labels: np.ndarray) -> float:
    """Equal error rate (fraction) for target labels 1 / non-target 0."""
    order = np.argsort(-scores, kind="stable")
    lab = labels[order].astype(bool)
    ntar, nnon = lab.sum(), (~lab).sum()
    if ntar == 0 or nnon == 0:
        raise ValueError("need both same-speaker and different-speaker trials")
    fr = 1.0 - np.cumsum(lab) / ntar            # miss rate when accepting the top k+1
    fa = np.cumsum(~lab) / nnon
    i = int(np.argmin(np.abs(fr - fa)))
    return float((fr[i] + fa[i]) / 2)


def lda_transform(X: np.ndarray, labels: np.ndarray, dim: int) -> tuple[np.ndarray, np.ndarray]:
    """Speaker LDA as Kaldi's ivector-compute-lda: directions maximising between- over within-class
    scatter (generalised eigenproblem), ``dim`` of them; returns (mean, projection [D, dim])."""
    from scipy.linalg import eigh
    mean = X.mean(0)
    Xc = X - mean
    classes = np.unique(labels)
    if len(classes) < 2:
        raise ValueError("LDA needs at least 2 speakers")
    mus = np.stack([Xc[labels == c].mean(0) for c in classes])
    counts = np.array([(labels == c).sum() for c in classes], dtype=np.float64)
    between = (mus * counts[:, None]).T @ mus / counts.sum()
    within = sum(((Xc[labels == c] - m).T @ (Xc[labels == c] - m)) for c, m in zip(classes, mus)) / len(X)
    within += 1e-6 * np.trace(within) / len(within) * np.eye(len(within))
    w, v = eigh(between, within)
    dim = min(dim, len(classes) - 1, X.shape[1])
    return mean, v[:, np.argsort(w)[::-1][:dim]]


def cosine_eer(vecs: dict[str, np.ndarray], utt2spk: dict[str, str],
               lda: tuple[np.ndarray, np.ndarray] | None = None) -> tuple[float, int, int]:
    utts = sorted(u for u in vecs if u in utt2spk)
    if len(utts) < 2:
        raise ValueError("fewer than 2 utterances with both i-vectors and speakers")
    X = np.stack([vecs[u] for u in utts]).astype(np.float64)
    if lda is not None:
        X = (X - lda[0]) @ lda[1]
    X -= X.mean(0)
    X /= np.linalg.norm(X, axis=1, keepdims=True) + 1e-12
    S = X @ X.T
    spk = np.array([utt2spk[u] for u in utts])
    iu = np.triu_indices(len(utts), 1)
    lab = (spk[:, None] == spk[None, :])[iu]
    return eer(S[iu], lab), int(lab.sum()), int((~lab).sum())


def utterance_ivectors_from_data(data: str, extractor_dir: str, device: str) -> dict[str, np.ndarray]:
    import torch  # noqa: F401
    from ser.ivector.features import iter_speaker_batches, load_data
    from ser.ivector.online import OnlineIvectorExtractor
    d = load_data(data)
    ex = OnlineIvectorExtractor.from_dir(extractor_dir, device=device)
    out = {}
    for b in iter_speaker_batches(d, [(u, [u]) for u in d.utts], 50_000, ex.dev):  # every utterance its own speaker
        for u, rows in zip(b.utts, ex.extract(b)):
            out[u] = rows[-1]
    return out


def synthetic_test(device: str) -> None:
    import logging
    logging.basicConfig(level=logging.WARNING)
    from ser.ivector.diag_ubm import train_diag_ubm
    from ser.ivector.extractor import train_ivector_extractor
    from ser.ivector.pca import get_pca_transform
    from ser.ivector.synthetic import make_synthetic_datadir
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        make_synthetic_datadir(t / "train", num_spk=30, utts_per_spk=6, dim=13, seed=0)
        make_synthetic_datadir(t / "test", num_spk=10, utts_per_spk=8, dim=13, seed=1)
        get_pca_transform(t / "train", t / "pca", dim=20, device=device)
        train_diag_ubm(t / "train", 32, t / "pca", t / "ubm", num_frames=20000, num_iters_init=10, device=device)
        train_ivector_extractor(t / "train", t / "ubm", t / "ie", ivector_dim=20, num_iters=5,
                                gaussian_min_count=10, device=device)
        vecs = utterance_ivectors_from_data(str(t / "test"), str(t / "ie"), device)
        e, nt, nn = cosine_eer(vecs, DataDir.load(t / "test").utt2spk)
        # chance-level control: the same trials with shuffled speaker labels
        rng = np.random.default_rng(0)
        u2s = DataDir.load(t / "test").utt2spk
        keys = sorted(u2s)
        perm = dict(zip(keys, rng.permutation([u2s[k] for k in keys])))
        e_shuf, _, _ = cosine_eer(vecs, perm)
        print(f"synthetic: 10 held-out speakers x 8 utterances: EER {100 * e:.2f}% over {nt} target / {nn} "
              f"non-target trials (shuffled-label control: {100 * e_shuf:.2f}%)")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dirs", nargs="*", help="ivector dirs (with ivector_online.scp) or data dirs (with feats.scp)")
    ap.add_argument("--data", help="data dir giving utt2spk for ivector dirs")
    ap.add_argument("--extractor-dir", help="extractor dir, to extract i-vectors for data dirs")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--lda-data", help="data dir of OTHER speakers (e.g. the ASR training set) to train a speaker "
                    "LDA applied before cosine scoring; classes = recordings when it has segments, else speakers")
    ap.add_argument("--lda-dim", type=int, default=50)
    ap.add_argument("--synthetic-test", action="store_true")
    a = ap.parse_args()
    if a.synthetic_test:
        synthetic_test(a.device)
        return 0
    if not a.dirs:
        ap.error("give ivector dirs or data dirs, or --synthetic-test")
    lda = None
    if a.lda_data:
        if not a.extractor_dir:
            ap.error("--lda-data needs --extractor-dir")
        tv = utterance_ivectors_from_data(a.lda_data, a.extractor_dir, a.device)
        ld = DataDir.load(a.lda_data)
        cls = {u: (ld.segments[u].reco if ld.segments is not None else ld.utt2spk[u]) for u in ld.utts}
        keys = sorted(tv)
        lda = lda_transform(np.stack([tv[u] for u in keys]).astype(np.float64), np.array([cls[u] for u in keys]),
                            a.lda_dim)
        print(f"speaker LDA from {a.lda_data}: {len(keys)} utterances, {len(set(cls.values()))} classes, "
              f"{lda[1].shape[1]} dims")
    for d in a.dirs:
        p = Path(d)
        if (p / "ivector_online.scp").is_file():
            if not a.data:
                ap.error(f"{d}: --data <data dir> is needed for utt2spk")
            print(f"warning: {d}: rows extracted with speaker carry-over make this EER optimistic", file=sys.stderr)
            vecs = {u: m[-1] for u, m in load_scp_matrices(p / "ivector_online.scp").items()}
            u2s = DataDir.load(a.data).utt2spk
        elif (p / "feats.scp").is_file():
            if not a.extractor_dir:
                ap.error(f"{d}: --extractor-dir is needed to extract i-vectors from a data dir")
            vecs = utterance_ivectors_from_data(d, a.extractor_dir, a.device)
            u2s = DataDir.load(p).utt2spk
        else:
            ap.error(f"{d}: neither an ivector dir (ivector_online.scp) nor a data dir (feats.scp)")
        e, nt, nn = cosine_eer(vecs, u2s)
        print(f"{d}: EER {100 * e:.2f}% over {nt} target / {nn} non-target trials (cosine)")
        if lda is not None:
            e, nt, nn = cosine_eer(vecs, u2s, lda)
            print(f"{d}: EER {100 * e:.2f}% over {nt} target / {nn} non-target trials (LDA + cosine)")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (ValueError, RuntimeError, FileNotFoundError) as e:
        print(f"ERROR: {e}", file=sys.stderr)
        sys.exit(1)
