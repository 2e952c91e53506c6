"""steps/train_chain.sh: LF-MMI training of the TDNN-F (Kaldi's steps/nnet3/chain/train.py).

Usage::

    steps/train_chain.sh [opts] <train-data> <ivector-dir> <chain-dir> <lang> <exp-dir>
    torchrun --nproc-per-node 4 -m ser.train.cli_train_chain [opts] ...   # DDP, one GPU per rank

``<chain-dir>`` holds den.pt, num.pt and pdf_map.pt (steps/chain/prepare_e2e.sh);
``<ivector-dir>`` ivector_online.scp (use ``none`` for a model without i-vectors).
Writes ``<exp-dir>/{checkpoint.pt,final.pt,log/train.N.log,log/compute_prob_*.N.log,
report/training_curve.png,report/progress.tsv}``.  Options keep Kaldi's names (without the
``--trainer.``/``--chain.`` prefixes): see ``--help``.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

import torch

from ser.chain.den_graph import load_den_chain_graph
from ser.nnet.tdnnf import TdnnfConfig, TdnnfModel
from ser.train.chain_trainer import ChainTrainer, ChainTrainerConfig

log = logging.getLogger("train_chain")


def _bool(s: str) -> bool:
    if s not in ("true", "false"):
        raise argparse.ArgumentTypeError("expected true or false")
    return s == "true"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    d = ChainTrainerConfig()
    p = argparse.ArgumentParser(prog="steps/train_chain.sh", description=__doc__.split("\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--config", choices=["mini", "tdnn_1g"], default="tdnn_1g", help="network size")
    p.add_argument("--num-epochs", type=float, default=d.num_epochs)
    p.add_argument("--initial-effective-lrate", type=float, default=d.initial_effective_lrate)
    p.add_argument("--final-effective-lrate", type=float, default=d.final_effective_lrate)
    p.add_argument("--num-jobs-initial", type=int, default=d.num_jobs_initial)
    p.add_argument("--num-jobs-final", type=int, default=d.num_jobs_final)
    p.add_argument("--frames-per-iter", type=int, default=d.frames_per_iter)
    p.add_argument("--num-chunk-per-minibatch", type=int, default=64,
                   help="sequences per minibatch, all ranks together")
    p.add_argument("--chunk-width", default="150,110,100",
                   help="chunk widths (input frames) for chunked egs; whole utterances for e2e egs")
    p.add_argument("--egs-type", choices=["e2e", "chunk"], default="e2e")
    p.add_argument("--xent-regularize", type=float, default=d.xent_regularize)
    p.add_argument("--leaky-hmm-coefficient", type=float, default=d.leaky_hmm_coefficient)
    p.add_argument("--out-of-range-regularize", type=float, default=d.out_of_range_regularize)
    p.add_argument("--dropout-schedule", default=d.dropout_schedule)
    p.add_argument("--max-param-change", type=float, default=d.max_param_change)
    p.add_argument("--batchnorm-stats-scale", type=float, default=d.batchnorm_stats_scale)
    p.add_argument("--num-valid-utts", type=int, default=300, help="Kaldi num_utts_subset")
    p.add_argument("--lda-minibatches", type=int, default=d.lda_minibatches)
    p.add_argument("--checkpoint-interval", type=int, default=d.checkpoint_interval)
    p.add_argument("--srand", type=int, default=d.seed)
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--bf16", type=_bool, default=True, help="bf16 autocast of the network on CUDA")
    p.add_argument("--resume", type=_bool, default=True)
    p.add_argument("train_data")
    p.add_argument("ivector_dir")
    p.add_argument("chain_dir")
    p.add_argument("lang_dir")
    p.add_argument("exp_dir")
    return p.parse_args(argv)


def pick_device(name: str, local_rank: int) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    dev = torch.device(name)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError("--device cuda but CUDA is not available")
        if dev.index is None:
            dev = torch.device("cuda", local_rank % torch.cuda.device_count())
        torch.cuda.set_device(dev)
    return dev


def build_egs(a: argparse.Namespace, model: TdnnfModel, rank: int, world: int):
    """(train, valid, train_diagnostic) egs from ser.train.egs (written separately).

    The training egs must implement ser.train.chain_trainer.EgsSource; the diagnostic sets
    are iterables of ChainMinibatch.  Each rank gets its share of every minibatch.
    """
    from ser.train import egs as egs_mod

    ivector_dir = None if a.ivector_dir == "none" else a.ivector_dir
    per_rank = max(1, a.num_chunk_per_minibatch // world)
    common = dict(data_dir=a.train_data, ivector_dir=ivector_dir, chain_dir=a.chain_dir,
                  left_context=model.left_context, right_context=model.right_context,
                  frame_subsampling_factor=model.frame_subsampling_factor,
                  num_valid_utts=a.num_valid_utts, seed=a.srand, rank=rank, world_size=world)
    if a.egs_type == "e2e":
        src = egs_mod.E2eEgs(minibatch_size=per_rank, **common)
    else:
        widths = [int(w) for w in a.chunk_width.split(",")]
        src = egs_mod.ChunkEgs(num_chunk_per_minibatch=per_rank, chunk_width=widths, **common)
    return src.train(), src.valid(), src.train_diagnostic()


def main(argv: list[str] | None = None) -> int:
    a = parse_args(argv)
    exp = Path(a.exp_dir)
    (exp / "log").mkdir(parents=True, exist_ok=True)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if rank == 0:
        handlers.append(logging.FileHandler(exp / "log" / "train.log"))
    logging.basicConfig(level=logging.INFO if rank == 0 else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", handlers=handlers)
    try:
        device = pick_device(a.device, local_rank)
        if world > 1:
            import torch.distributed as dist

            dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        chain_dir = Path(a.chain_dir)
        for f in ("den.pt", "num.pt", "pdf_map.pt"):
            if not (chain_dir / f).is_file():
                raise ValueError(f"{chain_dir}: missing {f} (run steps/chain/prepare_e2e.sh)")
        den, num_pdfs = load_den_chain_graph(chain_dir / "den.pt")
        ivector_dim = 0 if a.ivector_dir == "none" else 100
        cfg = (TdnnfConfig.mini(num_pdfs, ivector_dim=ivector_dim) if a.config == "mini"
               else TdnnfConfig.tdnn_1g(num_pdfs, ivector_dim=ivector_dim))
        model = TdnnfModel(cfg, generator=torch.Generator().manual_seed(a.srand))
        tcfg = ChainTrainerConfig(
            num_epochs=a.num_epochs, initial_effective_lrate=a.initial_effective_lrate,
            final_effective_lrate=a.final_effective_lrate, num_jobs_initial=a.num_jobs_initial,
            num_jobs_final=a.num_jobs_final, frames_per_iter=a.frames_per_iter,
            xent_regularize=a.xent_regularize, leaky_hmm_coefficient=a.leaky_hmm_coefficient,
            out_of_range_regularize=a.out_of_range_regularize,
            dropout_schedule=a.dropout_schedule or None, max_param_change=a.max_param_change,
            batchnorm_stats_scale=a.batchnorm_stats_scale, lda_minibatches=a.lda_minibatches,
            checkpoint_interval=a.checkpoint_interval, seed=a.srand, bf16=a.bf16)
        train, valid, diag = build_egs(a, model, rank, world)
        trainer = ChainTrainer(model, den, tcfg, exp, device)
        if rank == 0:
            n = sum(p.numel() for p in model.parameters())
            log.info("%s network: %d parameters, %d pdfs, context %d/%d, device %s, %d rank(s)",
                     a.config, n, num_pdfs, model.left_context, model.right_context, device, world)
        last = trainer.train(train, valid_egs=valid, train_diag_egs=diag, lda_egs=diag,
                             resume=a.resume)
    except (ValueError, RuntimeError) as e:
        print(f"steps/train_chain.sh: error: {e} (log: {exp}/log/train.log)", file=sys.stderr)
        return 1
    if rank == 0:
        print(f"train_chain: {trainer.state.step} minibatches, {len(trainer.state.history)} "
              f"iterations; final train/valid log-prob "
              f"{last.get('train_objf', float('nan')):.4f}/{last.get('valid_objf', float('nan')):.4f}"
              f", xent {last.get('train_xent', float('nan')):.4f}/"
              f"{last.get('valid_xent', float('nan')):.4f}; model {exp}/final.pt")
    return 0


if __name__ == "__main__":
    sys.exit(main())
