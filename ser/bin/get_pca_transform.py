"""steps/online/get_pca_transform.sh [opts] <data> <pca-dir>

Splice ±3 + online CMN + PCA (Kaldi's est-pca) transform for the i-vector UBM, as Kaldi's
steps/online/nnet2/get_pca_transform.sh; see ser/ivector/pca.py.
"""

from __future__ import annotations

import argparse

from ser.bin._online import add_online_arguments, online_kwargs
from ser.cli import run_main, setup_logging, str2bool
from ser.ivector.features import OnlineCmvnOptions, SpliceOptions
from ser.ivector.pca import get_pca_transform


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("data")
    p.add_argument("pca_dir")
    p.add_argument("--dim", type=int, default=40)
    p.add_argument("--normalize-variance", type=str2bool, default=True)
    p.add_argument("--normalize-mean", type=str2bool, default=True)
    p.add_argument("--left-context", type=int, default=3)
    p.add_argument("--right-context", type=int, default=3)
    p.add_argument("--max-utts", type=int, default=10000)
    p.add_argument("--subsample", type=int, default=2)
    p.add_argument("--cmn-window", type=int, default=600)
    p.add_argument("--speaker-frames", type=int, default=600)
    p.add_argument("--global-frames", type=int, default=200)
    add_online_arguments(p)
    a = p.parse_args(argv)
    setup_logging()
    get_pca_transform(a.data, a.pca_dir, a.dim, a.normalize_variance, a.normalize_mean,
                      SpliceOptions(a.left_context, a.right_context),
                      OnlineCmvnOptions(a.cmn_window, a.speaker_frames, a.global_frames), a.max_utts, a.subsample,
                      **online_kwargs(a))
    return 0


if __name__ == "__main__":
    run_main(main)
