"""One job of steps/make_opensmile.sh: openSMILE functionals of every utterance of a data dir (part), one
row per utterance, as a Kaldi binary ark + scp.

    python -m ser.bin.compute_opensmile_feats [--feature-set eGeMAPSv02] <data-part> <out-prefix>

Audio comes from ``wav.scp`` / ``segments`` through ``ser.io.audio`` (pipelines and extract-segments
semantics as for the MFCC); utterances Kaldi would skip (segment past the end, empty) are skipped,
counted and logged.  Writes ``<out-prefix>.{ark,scp}`` atomically; see ``ser.features.opensmile``.
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path


from ser.cli import run_main, setup_logging
from ser.features.opensmile import FEATURE_SETS, OpenSmileExtractor
from ser.features.perturb import sox_effects
from ser.io.audio import AudioStats, iter_utterance_audio
from ser.io.datadir import DataDir
from ser.io.tables import ArkScpWriter
from ser.progress import progress

log = logging.getLogger("compute_opensmile_feats")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--feature-set", choices=list(FEATURE_SETS), default="eGeMAPSv02")
    p.add_argument("--sample-frequency", type=int, default=16000)
    p.add_argument("data")
    p.add_argument("out_prefix")
    a = p.parse_args(argv)
    setup_logging()
    smile = OpenSmileExtractor(a.feature_set, a.sample_frequency)
    d = DataDir.load(a.data)
    stats, t0, seconds, n = AudioStats(), time.time(), 0.0, 0
    with ArkScpWriter(f"{a.out_prefix}.ark", f"{a.out_prefix}.scp") as w:
        for utt, wave in progress(iter_utterance_audio(d, a.sample_frequency, stats, effects=sox_effects),
                              total=len(d.utts),
                              desc=Path(a.data).name, mininterval=10):
            w.write(utt, smile(wave, f"{a.data}: utterance {utt}"))
            seconds += wave.shape[0] / a.sample_frequency
            n += 1
    el = time.time() - t0
    print(f"compute_opensmile_feats: {n} of {len(d.utts)} utterances, {smile.name} ({smile.dim} functionals), "
          f"{seconds:.1f} s of audio in {el:.1f} s ({seconds / max(el, 1e-9):.0f}x real time); {stats.summary()}")
    return 0


if __name__ == "__main__":
    run_main(main)
