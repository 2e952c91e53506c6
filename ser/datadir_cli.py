"""Command line for data-dir utilities; ``utils/*.sh`` are Kaldi-named wrappers around it.

    python -m ser.datadir_cli validate [--no-text] [--no-feats] <dir>     utils/validate_data_dir.sh
    python -m ser.datadir_cli fix <dir>                                   utils/fix_data_dir.sh
    python -m ser.datadir_cli subset --utt-list F <src> <dst>             utils/subset_data_dir.sh
    python -m ser.datadir_cli split <dir> <n>                             utils/split_data.sh
    python -m ser.datadir_cli speed3way [--factors "0.9 1.0 1.1"] <src> <dst>
    python -m ser.datadir_cli volume <dir>                                utils/data/perturb_data_dir_volume.sh
    python -m ser.datadir_cli copy-feats <src> <dst>    give <dst> the features of its utterances in <src>
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from ser.io.datadir import DataDir, DataDirError
from ser.prep.perturb import speed_perturb_3way_dir, volume_perturb_dir


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="ser.datadir_cli", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    v = sub.add_parser("validate")
    v.add_argument("--no-text", action="store_true")
    v.add_argument("--no-feats", action="store_true")
    v.add_argument("dir")
    sub.add_parser("fix").add_argument("dir")
    s = sub.add_parser("subset")
    s.add_argument("--utt-list", required=True)
    s.add_argument("src")
    s.add_argument("dst")
    sp = sub.add_parser("split")
    sp.add_argument("dir")
    sp.add_argument("n", type=int)
    s3 = sub.add_parser("speed3way")
    s3.add_argument("--factors", default="0.9 1.0 1.1")
    s3.add_argument("src")
    s3.add_argument("dst")
    sub.add_parser("volume").add_argument("dir")
    c = sub.add_parser("copy-feats")
    c.add_argument("src")
    c.add_argument("dst")
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        if a.cmd == "validate":
            d = DataDir.load(a.dir, validate=False)
            d.validate(need_text=not a.no_text, need_feats=not a.no_feats)
            print(f"Successfully validated data-directory {a.dir}")
        elif a.cmd == "fix":
            d = DataDir.load(a.dir, validate=False)
            n0 = len(d.utt2spk)
            d.fix().write(a.dir)
            print(f"fix_data_dir: {a.dir}: kept {len(DataDir.load(a.dir).utts)} of {n0} utterances")
        elif a.cmd == "subset":
            utts = [line.split()[0] for line in Path(a.utt_list).read_text().splitlines() if line.strip()]
            DataDir.load(a.src).subset(utts).write(a.dst, replace=True)
        elif a.cmd == "split":
            for part in DataDir.load(a.dir).split(a.n):
                print(part)
        elif a.cmd == "speed3way":
            factors = [float(x) for x in a.factors.split()]
            d, made = speed_perturb_3way_dir(a.src, a.dst, factors)
            if made:
                print(f"speed perturbation {factors}: {a.dst} has {len(d.utt2spk)} utterances")
            else:
                print(f"{a.dst} is up to date (speed factors {factors}, same {a.src}); not perturbing again")
        elif a.cmd == "volume":
            d = DataDir.load(a.dir)
            if not d.has("reco2vol"):
                volume_perturb_dir(d).write(a.dir)
                print(f"volume perturbation: {a.dir}, {len(d.wav)} recordings")
            else:
                print(f"{a.dir} already volume-perturbed (reco2vol exists)")
        elif a.cmd == "copy-feats":
            src = DataDir.load(a.src)
            dst = DataDir.load(a.dst)
            missing = [u for u in dst.utts if u not in src.feats]
            if missing:
                print(f"copy-feats: {len(missing)} utterances of {a.dst} have no features in {a.src} "
                      f"(e.g. {missing[0]}); dropping them", file=sys.stderr)
            keep = [u for u in dst.utts if u in src.feats]
            dst = dst.subset(keep)
            dst.feats = {u: src.feats[u] for u in keep}
            for extra in ("utt2num_frames", "utt2dur"):
                if src.has(extra):
                    dst.extras[extra] = {u: src.extra(extra)[u] for u in keep if u in src.extra(extra)}
            dst.write(a.dst)
    except (DataDirError, OSError) as e:
        print(f"ser.datadir_cli {a.cmd}: error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
