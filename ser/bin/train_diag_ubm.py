"""steps/online/train_diag_ubm.sh [opts] <data> <num-gauss> <pca-dir> <ubm-dir>

Diagonal-covariance UBM on PCA-transformed spliced features, as Kaldi's
steps/online/nnet2/train_diag_ubm.sh; see ser/ivector/diag_ubm.py.  With --cmd, the init job
(log/init.log, nj x --num-threads threads: it runs alone) and --nj accumulation jobs per pass
(log/acc.<pass>.<job>.log, --num-threads each) go through that job runner; this process sums and updates.
"""

from __future__ import annotations

import argparse

from ser.bin._online import add_online_arguments, online_kwargs, training_runner
from ser.cli import run_main, setup_logging, str2bool
from ser.ivector.diag_ubm import train_diag_ubm


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("data")
    p.add_argument("num_gauss", type=int)
    p.add_argument("pca_dir")
    p.add_argument("ubm_dir")
    p.add_argument("--num-iters", type=int, default=4)
    p.add_argument("--num-gselect", type=int, default=30)
    p.add_argument("--num-frames", type=int, default=500000)
    p.add_argument("--num-iters-init", type=int, default=20)
    p.add_argument("--initial-gauss-proportion", type=float, default=0.5)
    p.add_argument("--subsample", type=int, default=2)
    p.add_argument("--min-gaussian-weight", type=float, default=1e-4)
    p.add_argument("--remove-low-count-gaussians", type=str2bool, default=True)
    p.add_argument("--srand", type=int, default=0)
    add_online_arguments(p)
    a = p.parse_args(argv)
    setup_logging()
    train_diag_ubm(a.data, a.num_gauss, a.pca_dir, a.ubm_dir, a.num_iters, a.num_gselect, a.num_frames,
                   a.num_iters_init, a.initial_gauss_proportion, a.subsample, a.min_gaussian_weight,
                   a.remove_low_count_gaussians, a.srand, nj=a.nj, runner=training_runner(a),
                   init_runner=training_runner(a, a.nj), **online_kwargs(a))
    return 0


if __name__ == "__main__":
    run_main(main)
