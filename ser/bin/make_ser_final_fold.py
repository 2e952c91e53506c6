"""The training data of a deployed model: every session, validation speakers held out
(steps/ser/make_final_fold.sh).

    python -m ser.bin.make_ser_final_fold [--num-valid-speakers 1] [--seed 0] <data-dir>

After cross-validation, stage 7 trains the exported system once more on all sessions
(issue 14).  Model selection still needs held-out speakers: ``num_valid_speakers`` whole
speakers are drawn, seeded, as ser.emotion.folds draws them for a fold.  Writes
``<data-dir>/folds/final/all/{train,valid}`` (there is no test part; the system's figures are
the cross-validated ones) and ``folds.json``; a copy made from the same data and options is kept.
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

from ser.cli import run_main
from ser.emotion.folds import _options
from ser.io.atomic import atomic_dir
from ser.io.datadir import DataDir


def write_final_fold(data_dir: str | Path, num_valid_speakers: int = 1, seed: int = 0) -> Path:
    d = DataDir.load(data_dir)
    out = Path(data_dir) / "folds" / "final"
    opts = _options(d, "final", num_valid_speakers, seed)
    speakers = sorted(set(d.utt2spk.values()))
    if len(speakers) <= num_valid_speakers:
        raise ValueError(f"{data_dir}: {len(speakers)} speakers; cannot hold out {num_valid_speakers} for validation")
    if _same(out, opts):
        return out
    valid_spk = set(random.Random(f"{seed}:final").sample(speakers, num_valid_speakers))
    parts = {"train": [u for u in d.utts if d.utt2spk[u] not in valid_spk],
             "valid": [u for u in d.utts if d.utt2spk[u] in valid_spk]}
    with atomic_dir(out) as tmp:
        for name, utts in parts.items():
            d.subset(utts).write(tmp / "all" / name, replace=True)
        info = dict(opts, folds={"all": {k: len(v) for k, v in parts.items()}},
                    valid_speakers=sorted(valid_spk))
        (tmp / "folds.json").write_text(json.dumps(info, indent=1) + "\n")
    return out


def _same(out: Path, opts: dict) -> bool:
    try:
        info = json.loads((out / "folds.json").read_text())
    except (OSError, ValueError):
        return False
    return all(info.get(k) == v for k, v in opts.items()) and \
        all((out / "all" / part / "utt2spk").is_file() for part in ("train", "valid"))


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
