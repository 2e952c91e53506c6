"""Cross-validation folds of an emotion set as Kaldi data dirs (steps/ser/make_folds.sh).

    python -m ser.bin.make_ser_folds [--protocol session|speaker] [--num-valid-speakers 1]
                                     [--seed 0] <data-dir>

writes ``<data-dir>/folds/<protocol>/<fold>/{train,valid,test}`` and ``folds.json`` (options and
counts); see ser.emotion.folds for the protocols and the validation rule.  Folds made from the
same data with the same options are kept.
"""

from __future__ import annotations

import argparse
import json

from ser.cli import run_main
from ser.emotion.folds import PROTOCOLS, write_folds


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--protocol", choices=PROTOCOLS, default="session")
    p.add_argument("--num-valid-speakers", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("data_dir")
    a = p.parse_args(argv)
    out = write_folds(a.data_dir, a.protocol, a.num_valid_speakers, a.seed)
    info = json.loads((out / "folds.json").read_text())
    counts = " ".join(f"{f}={c['train']}/{c['valid']}/{c['test']}" for f, c in info["folds"].items())
    print(f"{out}: {len(info['folds'])} folds, train/valid/test utterances {counts}")
    return 0


if __name__ == "__main__":
    run_main(main)
