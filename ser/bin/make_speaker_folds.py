"""Cross-validation folds of an emotion set as Kaldi data dirs (steps/ser/make_speaker_folds.sh).

    python -m ser.bin.make_speaker_folds [--protocol speaker|session] [--seed 0] <data-dir>

writes ``<data-dir>/folds/<protocol>/<fold>/{train,valid,test}`` and ``folds.json``.
TODO(interfaces): stand-in for stage 7's make_ser_folds (see ser/emotion/speaker_folds.py).
"""

from __future__ import annotations

import argparse
import json

from ser.cli import run_main
from ser.emotion.speaker_folds import write_folds


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--protocol", choices=("speaker", "session"), default="speaker")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("data_dir")
    a = p.parse_args(argv)
    out = write_folds(a.data_dir, a.protocol, a.seed)
    info = json.loads((out / "folds.json").read_text())
    counts = " ".join(f"{f}={c['train']}/{c['valid']}/{c['test']}" for f, c in info["folds"].items())
    print(f"make_speaker_folds: {out}: {len(info['folds'])} folds, train/valid/test {counts}")
    return 0


if __name__ == "__main__":
    run_main(main)
