"""steps/online/extract_ivectors_online.sh [opts] <data> <extractor-dir> <ivector-dir>

Online i-vectors every --ivector-period frames (Kaldi's ivector-extract-online2, as
steps/online/nnet2/extract_ivectors_online.sh); see ser/ivector/online.py.
"""

from __future__ import annotations

import argparse

from ser.bin._online import add_online_arguments, online_kwargs
from ser.cli import run_main, setup_logging, str2bool
from ser.ivector.online import OnlineIvectorOptions, extract_ivectors_online


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("data")
    p.add_argument("extractor_dir")
    p.add_argument("ivector_dir")
    p.add_argument("--ivector-period", type=int, default=10)
    p.add_argument("--num-gselect", type=int, default=5)
    p.add_argument("--min-post", type=float, default=0.025)
    p.add_argument("--posterior-scale", type=float, default=0.1)
    p.add_argument("--max-remembered-frames", type=int, default=1000)
    p.add_argument("--max-count", type=float, default=0.0)
    p.add_argument("--utts-per-spk-max", type=int, default=-1,
                   help="group each speaker's utterances into pseudo-speakers of at most N "
                        "(utils/data/modify_speaker_info.sh); -1: keep speakers")
    p.add_argument("--compress", type=str2bool, default=True,
                   help="store the i-vectors as Kaldi compressed matrices (lossy; default true, as Kaldi's script)")
    add_online_arguments(p)
    a = p.parse_args(argv)
    setup_logging()
    opts = OnlineIvectorOptions(a.ivector_period, a.num_gselect, a.min_post, a.posterior_scale,
                                a.max_remembered_frames, a.max_count)
    extract_ivectors_online(a.data, a.extractor_dir, a.ivector_dir, opts, a.utts_per_spk_max, nj=a.nj,
                            compress=a.compress, **online_kwargs(a))
    return 0


if __name__ == "__main__":
    run_main(main)
