#!/usr/bin/env python3
"""Value error and disk size of Kaldi's compressed matrices (ser.io.compressed) on the recipe's MFCC features.

Utterances are synthesised as the embedded corpora's (espeak-ng, ser.corpora.espeak; coloured noise at
``--snr`` dB, int16 PCM), their features computed with ser.features.mfcc and ``--mfcc-config`` (the
recipe's hires MFCC, dither on, as steps/make_mfcc.sh), and written to one ark as float32 (``FM``) and
compressed (kAutomaticMethod: ``CM`` for over 8 frames), both through ser.io.tables.  Reported over all
frames: the largest absolute error, the RMS error per dimension relative to that dimension's standard
deviation (largest and mean over dimensions), percentiles of |error| / std, the error relative to each column's interquartile range
(the middle byte segment), and the ark size ratio.

    .venv/bin/python bench/feature_compression.py [--utts 40] [--mfcc-config conf/mfcc_hires.conf]
"""

from __future__ import annotations

import argparse
import tempfile
import zlib
from pathlib import Path

import numpy as np
import torch

from ser.corpora.espeak import Prosody, add_noise, synth_16k, to_pcm16
from ser.corpora.text import SentenceGenerator
from ser.features.mfcc import MfccOptions, compute_mfcc
from ser.io.tables import ArkScpWriter, load_scp_matrices

VOICES = ["en-us", "en-us+m3", "en-us+f2", "en+m1", "en+f4"]


def utterances(n: int, snr: float, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        x = synth_16k(" ".join(SentenceGenerator(rng).sentence()), VOICES[i % len(VOICES)], Prosody(rate=int(rng.integers(140, 200))))
        out.append(to_pcm16(add_noise(x, snr, rng)).astype(np.float32))
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--utts", type=int, default=40)
    p.add_argument("--snr", type=float, default=25.0)
    p.add_argument("--mfcc-config", default="conf/mfcc_hires.conf")
    a = p.parse_args()
    torch.set_num_threads(1)
    opts = MfccOptions.from_conf(a.mfcc_config)
    feats = {}
    for i, w in enumerate(utterances(a.utts, a.snr)):
        g = torch.Generator().manual_seed(zlib.crc32(f"u{i}".encode()))
        feats[f"u{i:03d}"] = compute_mfcc([torch.from_numpy(w)], opts, generator=g)[0].numpy()
    with tempfile.TemporaryDirectory() as d:
        sizes, back = {}, {}
        for name, comp in (("float32", False), ("compressed", True)):
            with ArkScpWriter(f"{d}/{name}.ark", f"{d}/{name}.scp", compress=comp) as wr:
                for k, m in feats.items():
                    wr.write(k, m)
            sizes[name] = Path(f"{d}/{name}.ark").stat().st_size
            back[name] = load_scp_matrices(f"{d}/{name}.scp")
    ref = np.concatenate([back["float32"][k] for k in feats])
    got = np.concatenate([back["compressed"][k] for k in feats])
    err = got - ref
    std = ref.std(0)
    rms = np.sqrt((err ** 2).mean(0))
    per_utt_iqr = np.concatenate([np.abs(back["compressed"][k] - m) /
                                  np.maximum(np.subtract(*np.percentile(m, [75, 25], axis=0)), 1e-9)
                                  for k, m in feats.items()])
    print(f"{len(feats)} utterances, {ref.shape[0]} frames x {ref.shape[1]} dims ({a.mfcc_config}, SNR {a.snr} dB)")
    print(f"max |error|                      {np.abs(err).max():.4g}  (feature values span {ref.min():.1f} .. {ref.max():.1f})")
    q = np.percentile(np.abs(err) / std, [50, 99, 99.9, 100])
    print(f"|error| / std percentiles 50/99/99.9/100  {' / '.join(f'{v:.3g}' for v in q)}")
    print(f"RMS error / std, worst dimension {(rms / std).max():.4g}  (dim {int((rms / std).argmax())})")
    print(f"RMS error / std, mean over dims  {(rms / std).mean():.4g}")
    print(f"max |error| / column IQR         {per_utt_iqr.max():.4g}  (middle segment: 128 steps -> <= 1/256 + header rounding)")
    print(f"ark size: float32 {sizes['float32']} B, compressed {sizes['compressed']} B, "
          f"ratio {sizes['float32'] / sizes['compressed']:.2f}x")


if __name__ == "__main__":
    main()
