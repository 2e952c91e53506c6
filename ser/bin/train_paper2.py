"""Train and test one of paper 2's systems on every fold of an emotion set (steps/ser/train_paper2.sh).

    python -m ser.bin.train_paper2 --system ds_dense|ds_lstm|ds_dense_dense|ds_dense_lstm|rf|majority \\
        [--epochs 30] [--learning-rate 0.001] [--segment-frames 20] [--rf-trees 1000] [--rf-max-depth 10] \\
        [--seed 0] [--description TEXT] <feats-dir> <folds-dir> <system-dir>

<feats-dir>: a data dir whose feats.scp covers the set's utterances: frame features (the heads: layer_1 of
the CTC model) or one row per utterance (rf, majority: openSMILE functionals).  <folds-dir>:
data/<set>/folds/<protocol> with <fold>/{train,valid,test}.  Writes <system-dir>/labels.txt, meta.json and
<fold>/{utt2post,utt2pred,valid.json}; score with steps/ser/score.sh.  See ser/emotion/paper2.py.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ser.cli import run_main, setup_logging
from ser.config import Paper2Config
from ser.emotion.ds_heads import HeadOptions
from ser.emotion.paper2 import SYSTEMS, run_system, system_options


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--system", choices=SYSTEMS, required=True)
    rec = Paper2Config()  # the defaults, defined once (ser.config)
    p.add_argument("--epochs", type=int, default=rec.head_epochs,
                   help="passes per head stage (best on validation kept)")
    p.add_argument("--learning-rate", type=float, default=rec.head_learning_rate, help="Adam step size of the heads")
    p.add_argument("--segment-frames", type=int, default=rec.segment_frames,
                   help="frames per segment of the two-half heads")
    p.add_argument("--rf-trees", type=int, default=rec.rf_trees)
    p.add_argument("--rf-max-depth", type=int, default=rec.rf_max_depth)
    p.add_argument("--seed", type=int, default=rec.seed)
    p.add_argument("--set", default=None, help="set name for meta.json (default: from <folds-dir>)")
    p.add_argument("--description", default="")
    p.add_argument("feats_dir")
    p.add_argument("folds_dir")
    p.add_argument("system_dir")
    a = p.parse_args(argv)
    setup_logging()
    if a.epochs < 1 or a.segment_frames < 1:
        raise ValueError(f"--epochs and --segment-frames must be >= 1, got {a.epochs}, {a.segment_frames}")
    heads = HeadOptions(epochs=a.epochs, learning_rate=a.learning_rate, segment_frames=a.segment_frames,
                        seed=a.seed)
    opts = system_options(a.system, heads, a.rf_trees, a.rf_max_depth, a.seed)
    folds_dir = Path(a.folds_dir)
    meta = run_system(a.system, Path(a.feats_dir), folds_dir, Path(a.system_dir), opts,
                      a.set or folds_dir.parents[1].name, a.description)
    ua = [v["ua"] for v in meta["valid"].values() if "ua" in v]
    print(f"train_paper2: {a.system_dir}: {len(meta['folds'])} folds, "
          + (f"mean validation UA {sum(ua) / len(ua):.3f}" if ua else "no validation (trained on every training speaker)"))
    return 0


if __name__ == "__main__":
    run_main(main)
