"""steps/online/train_ivector_extractor.sh [opts] <data> <ubm-dir> <extractor-dir>

i-vector extractor (total variability model) trained by EM, as Kaldi's
steps/online/nnet2/train_ivector_extractor.sh; see ser/ivector/extractor.py.  With --cmd, --nj
statistics jobs (log/stats.<job>.log) and --nj accumulation jobs per iteration (log/acc.<iter>.<job>.log),
--num-threads each, go through that job runner; this process sums and updates.
"""

from __future__ import annotations

import argparse

from ser.bin._online import add_online_arguments, online_kwargs, training_runner
from ser.cli import run_main, setup_logging, str2bool
from ser.ivector.extractor import train_ivector_extractor


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("data")
    p.add_argument("ubm_dir")
    p.add_argument("extractor_dir")
    p.add_argument("--ivector-dim", type=int, default=100)
    p.add_argument("--num-iters", type=int, default=10)
    p.add_argument("--num-gselect", type=int, default=5)
    p.add_argument("--posterior-scale", type=float, default=0.1)
    p.add_argument("--min-post", type=float, default=0.025)
    p.add_argument("--subsample", type=int, default=2)
    p.add_argument("--gaussian-min-count", type=float, default=100.0)
    p.add_argument("--variance-floor-factor", type=float, default=0.1)
    p.add_argument("--online-cmvn-iextractor", type=str2bool, default=False)
    p.add_argument("--srand", type=int, default=0)
    add_online_arguments(p)
    a = p.parse_args(argv)
    setup_logging()
    if a.online_cmvn_iextractor:
        raise ValueError("--online-cmvn-iextractor true is not supported")
    train_ivector_extractor(a.data, a.ubm_dir, a.extractor_dir, a.ivector_dim, a.num_iters, a.num_gselect,
                            a.posterior_scale, a.min_post, a.subsample, a.gaussian_min_count,
                            a.variance_floor_factor, a.srand, nj=a.nj, runner=training_runner(a), **online_kwargs(a))
    return 0


if __name__ == "__main__":
    run_main(main)
