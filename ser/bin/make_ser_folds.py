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
from pathlib import Path

from ser.emotion.folds import PROTOCOLS, load_fold, read_fold_names, write_folds


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--protocol", choices=PROTOCOLS, default="session")
    p.add_argument("--num-valid-speakers", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--check", default=None, metavar="LABELS",
                   help="check the written folds of <data-dir>/folds/<protocol> (or the folds dir given) instead: "
                        "no speaker in two parts, every class of LABELS ('ang hap ...') in train and valid")
    p.add_argument("data_dir")
    a = p.parse_args(argv)
    if a.check is not None:
        out = Path(a.data_dir)
        names = read_fold_names(out)
        for f in names:
            load_fold(out / f, a.check.split())
        print(f"{out}: {len(names)} folds checked")
        return 0
    out = write_folds(a.data_dir, a.protocol, a.num_valid_speakers, a.seed)
    info = json.loads((out / "folds.json").read_text())
    counts = " ".join(f"{f}={c['train']}/{c['valid']}/{c['test']}" for f, c in info["folds"].items())
    print(f"{out}: {len(info['folds'])} folds, train/valid/test utterances {counts}")
    return 0


if __name__ == "__main__":
    run_main(main)
