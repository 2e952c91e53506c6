"""utils/data/combine_short_segments.sh <src-dir> <min-segment-length-in-seconds> <dir>: concatenate short
segments (Kaldi's utils/data/combine_short_segments.sh; see ser.prep.combine_segments).

The concatenated features are written to ``<ark-dir>/raw_mfcc_<name of dir>.ark`` (``--ark-dir``, default
mfcc/ as steps/make_mfcc.sh; Kaldi writes ``concat-feats`` pipes instead); singletons keep their feats.scp
entries.  Prints the segments and frames before and after.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ser.cli import run_main, setup_logging
from ser.prep.combine_segments import combine_short_segments


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ark-dir", default="mfcc", help="where the concatenated features go")
    p.add_argument("src")
    p.add_argument("min_seg_len", type=float)
    p.add_argument("dst")
    a = p.parse_args(argv)
    setup_logging()
    if Path(a.src).resolve() == Path(a.dst).resolve():
        raise ValueError(f"combine_short_segments: <src-dir> and <dir> must differ ({a.src})")
    ark_dir = Path(a.ark_dir)
    ark_dir.mkdir(parents=True, exist_ok=True)
    info = combine_short_segments(a.src, a.min_seg_len, a.dst, ark_dir / f"raw_mfcc_{Path(a.dst).name}.ark")
    print(f"combine_short_segments: {a.src} -> {a.dst} (min {a.min_seg_len:g} s): {info.utts_in} -> "
          f"{info.utts_out} segments ({info.short_in} -> {info.short_out} under {a.min_seg_len:g} s, "
          f"{info.combined_groups} combined), {info.frames} frames", file=sys.stderr)
    return 0


if __name__ == "__main__":
    run_main(main)
