"""One job of steps/make_mfcc.sh: a data dir (part) → MFCC ark + scp + utt2num_frames.

Kaldi's make_mfcc.sh runs ``extract-segments | compute-mfcc-feats | copy-feats``
per job; this program does the same three steps: segments are cut with
extract-segments semantics (ser.io.audio), features computed by ser.features.mfcc
with the options of ``--mfcc-config`` (a Kaldi .conf file), and written as a binary ark
with its scp, atomically (``--compress true``: as Kaldi's compressed matrices, copy-feats
--compress; ser.io.compressed).  Utterances Kaldi would skip (segment past the end,
empty or too short for one frame) and utterances with non-finite audio or features are skipped,
counted and logged.

Dither (Kaldi default 1.0) uses a generator seeded from the utterance id, so the
features do not depend on how the data was split into jobs.

    python -m ser.bin.compute_mfcc_feats --mfcc-config conf/mfcc_hires.conf <data-part> <out-prefix>
writes <out-prefix>.ark, <out-prefix>.scp and <out-prefix>.utt2num_frames.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
import zlib
from pathlib import Path

import torch

from ser.cli import add_device_argument, run_main, setup_logging, str2bool
from ser.features.mfcc import MfccOptions, compute_mfcc
from ser.io.atomic import atomic_open
from ser.features.perturb import sox_effects
from ser.io.audio import AudioStats, iter_utterance_audio
from ser.io.datadir import DataDir
from ser.io.tables import ArkScpWriter
from ser.progress import progress

log = logging.getLogger("compute_mfcc_feats")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--mfcc-config", required=True, help="Kaldi MFCC option file, e.g. conf/mfcc_hires.conf")
    add_device_argument(p, default="cpu")
    p.add_argument("--compress", type=str2bool, default=False,
                   help="write Kaldi compressed matrices (copy-feats --compress; default false)")
    p.add_argument("data")
    p.add_argument("out_prefix")
    a = p.parse_args(argv)
    setup_logging()
    torch.set_num_threads(1)  # one job per core, as Kaldi's jobs
    opts = MfccOptions.from_conf(a.mfcc_config)
    d = DataDir.load(a.data)
    fs = int(opts.sample_frequency)
    stats = AudioStats()
    t0, seconds, n_ok = time.time(), 0.0, 0
    frames: dict[str, int] = {}
    with ArkScpWriter(f"{a.out_prefix}.ark", f"{a.out_prefix}.scp", compress=a.compress) as w:
        for utt, wave in progress(iter_utterance_audio(d, fs, stats, effects=sox_effects), total=len(d.utts),
                              desc=Path(a.data).name,
                              mininterval=10, file=sys.stderr):
            g = torch.Generator().manual_seed(zlib.crc32(utt.encode()))
            feats = compute_mfcc([wave], opts, device=a.device, generator=g)[0]
            if feats.shape[0] == 0:
                log.warning("utterance %s: %d samples, too short for one frame; skipped", utt, wave.shape[0])
                stats.add("too_short_for_a_frame_skipped")
                continue
            if not bool(torch.isfinite(feats).all()):  # e.g. float audio too loud for float32 power
                log.warning("utterance %s: non-finite features; skipped", utt)
                stats.add("non_finite_features_skipped")
                continue
            w.write(utt, feats.cpu().numpy())
            frames[utt] = feats.shape[0]
            seconds += wave.shape[0] / fs
            n_ok += 1
    with atomic_open(f"{a.out_prefix}.utt2num_frames") as f:
        f.writelines(f"{u} {n}\n" for u, n in sorted(frames.items()))
    el = time.time() - t0
    print(f"compute_mfcc_feats: {n_ok} of {len(d.utts)} utterances, {seconds:.1f} s of audio in {el:.1f} s "
          f"({seconds / max(el, 1e-9):.0f}x real time); {stats.summary()}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    run_main(main)
