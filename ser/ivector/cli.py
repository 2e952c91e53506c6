"""Command lines behind ``steps/online/*.sh`` (Kaldi argument order, Kaldi option names).

    python -m ser.ivector.cli get_pca_transform [opts] <data> <pca-dir>
    python -m ser.ivector.cli train_diag_ubm [opts] <data> <num-gauss> <pca-dir> <ubm-dir>
    python -m ser.ivector.cli train_ivector_extractor [opts] <data> <ubm-dir> <extractor-dir>
    python -m ser.ivector.cli extract_ivectors_online [opts] <data> <extractor-dir> <ivector-dir>
"""

from __future__ import annotations

import argparse
import logging
import sys

import torch


def _bool(s: str) -> bool:
    if s.lower() in ("true", "1", "yes"):
        return True
    if s.lower() in ("false", "0", "no"):
        return False
    raise argparse.ArgumentTypeError(f"expected true/false, got {s!r}")


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="auto", help="auto|cpu|cuda[:N] (default auto)")
    p.add_argument("--num-threads", type=int, default=0, help="torch CPU threads (0: torch default)")
    p.add_argument("--batch-frames", type=int, default=None, help="frames per batch of whole speakers")
    p.add_argument("--cmd", default=None, help="ignored (Kaldi compatibility: jobs run in this process)")
    p.add_argument("--nj", type=int, default=1,
                   help="parallel jobs: extract_ivectors_online runs N worker threads of one torch thread each; "
                        "the training steps ignore it (one process)")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in COMMANDS:
        print(f"usage: python -m ser.ivector.cli {{{','.join(COMMANDS)}}} [options] args...", file=sys.stderr)
        return 2
    name = argv.pop(0)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    return COMMANDS[name](name, argv)


def _parse(p: argparse.ArgumentParser, argv: list[str]) -> argparse.Namespace:
    _common(p)
    a = p.parse_args(argv)
    if a.num_threads > 0:
        torch.set_num_threads(a.num_threads)
    return a


def _kw(a: argparse.Namespace) -> dict:
    return {"device": a.device, **({"batch_frames": a.batch_frames} if a.batch_frames else {})}


def cmd_get_pca_transform(name: str, argv: list[str]) -> int:
    from ser.ivector.features import OnlineCmvnOptions, SpliceOptions
    from ser.ivector.pca import get_pca_transform
    p = argparse.ArgumentParser(prog=f"steps/online/{name}.sh",
                                description="splice ±3 + online CMN + PCA (est-pca) transform for the i-vector UBM")
    p.add_argument("data")
    p.add_argument("pca_dir")
    p.add_argument("--dim", type=int, default=40)
    p.add_argument("--normalize-variance", type=_bool, default=True)
    p.add_argument("--normalize-mean", type=_bool, default=True)
    p.add_argument("--left-context", type=int, default=3)
    p.add_argument("--right-context", type=int, default=3)
    p.add_argument("--max-utts", type=int, default=10000)
    p.add_argument("--subsample", type=int, default=2)
    p.add_argument("--cmn-window", type=int, default=600)
    p.add_argument("--speaker-frames", type=int, default=600)
    p.add_argument("--global-frames", type=int, default=200)
    a = _parse(p, argv)
    get_pca_transform(a.data, a.pca_dir, a.dim, a.normalize_variance, a.normalize_mean,
                      SpliceOptions(a.left_context, a.right_context),
                      OnlineCmvnOptions(a.cmn_window, a.speaker_frames, a.global_frames), a.max_utts, a.subsample,
                      **_kw(a))
    return 0


def cmd_train_diag_ubm(name: str, argv: list[str]) -> int:
    from ser.ivector.diag_ubm import train_diag_ubm
    p = argparse.ArgumentParser(prog=f"steps/online/{name}.sh", description="train the diagonal UBM")
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
    p.add_argument("--remove-low-count-gaussians", type=_bool, default=True)
    p.add_argument("--srand", type=int, default=0)
    a = _parse(p, argv)
    train_diag_ubm(a.data, a.num_gauss, a.pca_dir, a.ubm_dir, a.num_iters, a.num_gselect, a.num_frames,
                   a.num_iters_init, a.initial_gauss_proportion, a.subsample, a.min_gaussian_weight,
                   a.remove_low_count_gaussians, a.srand, **_kw(a))
    return 0


def cmd_train_ivector_extractor(name: str, argv: list[str]) -> int:
    from ser.ivector.extractor import train_ivector_extractor
    p = argparse.ArgumentParser(prog=f"steps/online/{name}.sh", description="train the i-vector extractor")
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
    p.add_argument("--cache-gb", type=float, default=4.0,
                   help="keep per-utterance stats in memory up to this size, else recompute each iteration")
    p.add_argument("--online-cmvn-iextractor", type=_bool, default=False)
    p.add_argument("--srand", type=int, default=0)
    a = _parse(p, argv)
    if a.online_cmvn_iextractor:
        raise SystemExit(f"{p.prog}: --online-cmvn-iextractor true is not supported")
    train_ivector_extractor(a.data, a.ubm_dir, a.extractor_dir, a.ivector_dim, a.num_iters, a.num_gselect,
                            a.posterior_scale, a.min_post, a.subsample, a.gaussian_min_count,
                            a.variance_floor_factor, a.srand, cache_gb=a.cache_gb, **_kw(a))
    return 0


def cmd_extract_ivectors_online(name: str, argv: list[str]) -> int:
    from ser.ivector.online import OnlineIvectorOptions, extract_ivectors_online
    p = argparse.ArgumentParser(prog=f"steps/online/{name}.sh",
                                description="online i-vectors every --ivector-period frames (ivector-extract-online2)")
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
    p.add_argument("--compress", type=_bool, default=False, help="ignored: matrices are stored as float32")
    a = _parse(p, argv)
    opts = OnlineIvectorOptions(a.ivector_period, a.num_gselect, a.min_post, a.posterior_scale,
                                a.max_remembered_frames, a.max_count)
    extract_ivectors_online(a.data, a.extractor_dir, a.ivector_dir, opts, a.utts_per_spk_max, nj=a.nj, **_kw(a))
    return 0


COMMANDS = {
    "get_pca_transform": cmd_get_pca_transform,
    "train_diag_ubm": cmd_train_diag_ubm,
    "train_ivector_extractor": cmd_train_ivector_extractor,
    "extract_ivectors_online": cmd_extract_ivectors_online,
}


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (ValueError, RuntimeError, FileNotFoundError) as e:
        print(f"ERROR: {e}", file=sys.stderr)
        sys.exit(1)
