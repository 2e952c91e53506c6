"""The training data of a deployed model: every session, validation speakers held out
(steps/ser/make_final_fold.sh).

    python -m ser.bin.make_ser_final_fold [--num-valid-speakers 1] [--seed 0] <data-dir>

After cross-validation, stage 7 trains the exported system once more on all sessions
(issue 14).  Model selection still needs held-out speakers: ``num_valid_speakers`` whole
speakers are drawn, seeded, as ser.emotion.folds draws them for a fold (write_final_fold there).  Writes
``<data-dir>/folds/final/all/{train,valid}`` (there is no test part; the system's figures are
the cross-validated ones) and ``folds.json``; a copy made from the same data and options is kept.
"""

from __future__ import annotations

import argparse
import json

from ser.cli import run_main
from ser.emotion.folds import write_final_fold


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--num-valid-speakers", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("data_dir")
    a = p.parse_args(argv)
    out = write_final_fold(a.data_dir, a.num_valid_speakers, a.seed)
    info = json.loads((out / "folds.json").read_text())
    c = info["folds"]["all"]
    print(f"{out}/all: {c['train']} training / {c['valid']} validation utterances "
          f"(validation speakers {' '.join(info['valid_speakers'])})")
    return 0


if __name__ == "__main__":
    run_main(main)
