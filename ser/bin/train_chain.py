"""steps/train_chain.sh: LF-MMI training of the TDNN-F (Kaldi's steps/nnet3/chain/train.py).

Usage::

    steps/train_chain.sh [opts] <train-data> <ivector-dir> <chain-dir> <exp-dir>
    torchrun --nproc-per-node 4 -m ser.bin.train_chain [opts] ...   # DDP, one GPU per rank

``<chain-dir>`` holds den.pt, num.pt and pdf_map.pt (steps/chain/prepare_e2e.sh);
``<ivector-dir>`` ivector_online.scp (use ``none`` for a model without i-vectors).
Writes ``<exp-dir>/{checkpoint.pt,final.pt,log/train.N.log,log/compute_prob_*.N.log,
report/training_curve.png,report/progress.tsv}``.  Options keep Kaldi's names (without the
``--trainer.``/``--chain.`` prefixes): see ``--help``.

Deviations: ``--optimizer adam`` (default; ``kaldi-sgd`` = plain SGD) replaces Kaldi's
natural-gradient SGD, see ser.train.chain_trainer; with Adam the ``--*-effective-lrate``
values are Adam step sizes (mini recipe 0.005 -> 0.0005, tdnn_1g 0.001 -> 0.0001).
``--input-model`` (Kaldi's ``--trainer.input-model``) starts from a trained model, e.g. the
chunk pass from the flat-start model when both use the same pdfs (Kaldi builds a new tree
between the two passes and starts again from a random model).
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import torch

from ser.chain.chain_dir import ChainDir
from ser.cli import add_device_argument, run_main, setup_logging, str2bool
from ser.config import ChainConfig
from ser.nnet.tdnnf import NET_PRESETS, TdnnfConfig, TdnnfModel
from ser.nnet.model_io import load_chain_model
from ser import ddp
from ser.train.chain_trainer import ChainTrainer, ChainTrainerConfig
from ser.train.optimizer import OPTIMIZERS

log = logging.getLogger("train_chain")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    d, rec = ChainTrainerConfig(), ChainConfig()  # defaults defined once: ser.config (ChainTrainerConfig's too)
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--net", choices=list(NET_PRESETS), default=rec.net,
                   help="network size (ser.nnet.tdnnf.TdnnfConfig.tiny / .mini / .tdnn_1g)")
    p.add_argument("--num-epochs", type=float, default=d.num_epochs)
    p.add_argument("--initial-effective-lrate", type=float, default=d.initial_effective_lrate)
    p.add_argument("--final-effective-lrate", type=float, default=d.final_effective_lrate)
    p.add_argument("--num-jobs-initial", type=int, default=d.num_jobs_initial)
    p.add_argument("--num-jobs-final", type=int, default=d.num_jobs_final)
    p.add_argument("--frames-per-iter", type=int, default=d.frames_per_iter)
    p.add_argument("--num-chunk-per-minibatch", type=int, default=rec.num_chunk_per_minibatch,
                   help="sequences per minibatch, all ranks together")
    p.add_argument("--chunk-width", default="150,110,100",
                   help="chunk widths (input frames) for chunked egs; whole utterances for e2e egs")
    p.add_argument("--egs-type", choices=["e2e", "chunk"], default="e2e",
                   help="e2e: whole utterances with their flat-start numerators; chunk: chunks of --chunk-width "
                   "with numerators cut from the alignment --ali")
    p.add_argument("--egs-dir", default=None,
                   help="egs written by steps/chain/get_egs.sh (default: made in this process)")
    p.add_argument("--ali", default=None, help="ali.pt from steps/chain/align.sh (for --egs-type chunk)")
    p.add_argument("--e2e-minibatch-size", default=rec.e2e_minibatch_size,
                   help="whole-utterance minibatch sizes by input length (Kaldi e2e rule syntax)")
    p.add_argument("--input-model", default=None,
                   help="start from this chain model (final.pt of an earlier run with the same network and pdfs, "
                   "e.g. the flat-start model for the chunk pass; Kaldi's --trainer.input-model) instead of a "
                   "random initialisation; its preconditioning matrix is kept")
    p.add_argument("--xent-regularize", type=float, default=d.xent_regularize)
    p.add_argument("--leaky-hmm-coefficient", type=float, default=d.leaky_hmm_coefficient)
    p.add_argument("--out-of-range-regularize", type=float, default=d.out_of_range_regularize)
    p.add_argument("--dropout-schedule", default=d.dropout_schedule)
    p.add_argument("--max-param-change", type=float, default=d.max_param_change)
    p.add_argument("--optimizer", choices=list(OPTIMIZERS), default=d.optimizer,
                   help="adam: Adam direction (stand-in for Kaldi's natural gradient) with Kaldi's lr schedule, "
                   "l2 (as decoupled weight decay) and max-change; kaldi-sgd: plain SGD as Kaldi without NG")
    p.add_argument("--adam-betas", default=f"{d.adam_beta1},{d.adam_beta2}", help="Adam beta1,beta2")
    p.add_argument("--adam-epsilon", type=float, default=d.adam_epsilon)
    p.add_argument("--adam-max-change-scale", type=float, default=d.adam_max_change_scale,
                   help="under Adam, Kaldi's max-change thresholds (0.75/1.5, --max-param-change) times this")
    p.add_argument("--batchnorm-recompute-sequences", type=int, default=d.batchnorm_recompute_sequences,
                   help="training sequences over which final.pt's BatchNorm stats are recomputed "
                   "(nnet3-chain-combine's RecomputeStats); 0: keep the decayed sums")
    p.add_argument("--batchnorm-stats-scale", type=float, default=d.batchnorm_stats_scale)
    p.add_argument("--num-valid-utts", type=int, default=rec.num_valid_utts, help="Kaldi num_utts_subset")
    p.add_argument("--lda-minibatches", type=int, default=d.lda_minibatches)
    p.add_argument("--checkpoint-interval", type=int, default=d.checkpoint_interval)
    p.add_argument("--srand", type=int, default=d.seed)
    add_device_argument(p)
    p.add_argument("--bf16", type=str2bool, default=True, help="bf16 autocast of the network on CUDA")
    p.add_argument("--resume", type=str2bool, default=True)
    p.add_argument("--max-steps", type=int, default=None,
                   help="stop after this many minibatches (benchmarks: bench/scale.py); default: the schedule")
    p.add_argument("train_data")
    p.add_argument("ivector_dir")
    p.add_argument("chain_dir")
    p.add_argument("exp_dir")
    return p.parse_args(argv)


def _ivector_dim(ivector_dir: str) -> int:
    from ser.io.tables import read_matrix, read_scp

    scp = Path(ivector_dir) / "ivector_online.scp"
    if not scp.is_file():
        raise ValueError(f"{ivector_dir}: no ivector_online.scp")
    return int(read_matrix(next(iter(read_scp(scp).values()))).shape[1])


class RankShard:
    """Rank ``rank`` of ``world`` takes every world-th sequence of each global minibatch (the egs make
    only that share: ser.train.egs set_share), so all ranks together see exactly the single-process
    minibatches (the egs are built with the same seed)."""

    def __init__(self, egs, rank: int, world: int) -> None:
        self.egs, self.rank, self.world = egs, rank, world
        egs.set_share(rank, world)

    def __iter__(self):
        return iter(self.egs)

    def __len__(self) -> int:
        return len(self.egs)

    @property
    def num_frames(self) -> float:
        """This rank's share of the training frames (the trainer sums them over the ranks)."""
        return self.egs.num_frames / self.world

    def set_epoch(self, epoch: int) -> None:
        self.egs.set_epoch(epoch)

    def state_dict(self) -> dict:
        return self.egs.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.egs.load_state_dict(state)


def build_egs(a: argparse.Namespace, model: TdnnfModel, rank: int, world: int):
    """(train, valid, train_diagnostic) egs (ser.train.egs): whole utterances (``--egs-type e2e``,
    flat start) or chunks cut with an alignment (``--egs-type chunk --ali ali.pt``), the training
    examples read from the shards of steps/chain/get_egs.sh with ``--egs-dir`` (no numerator is built,
    no feature loaded: the shards are memory-mapped)."""
    from ser.chain.supervision import Normalizer
    from ser.train.align import Alignment
    from ser.io.batching import load_features
    from ser.train.egs import ChunkEgs, E2eEgs, split_valid
    from ser.train.egs_shards import EgsShard, shard_paths

    ivector_dir = None if a.ivector_dir == "none" else a.ivector_dir
    chain = ChainDir.load(a.chain_dir)
    lc, rc = model.left_context, model.right_context
    if a.egs_dir:
        egs_dir = Path(a.egs_dir)
        train = [EgsShard.load(p) for p in shard_paths(egs_dir)]
        if train[0].kind != a.egs_type:
            raise ValueError(f"--egs-dir {egs_dir}: {train[0].kind} egs, but --egs-type {a.egs_type}")

        def from_shards(shards, is_train):
            if a.egs_type == "e2e":
                return E2eEgs.from_shards(shards, lc, rc, a.e2e_minibatch_size, seed=a.srand, frame_shift=is_train,
                                          shuffle=is_train)
            return ChunkEgs.from_shards(shards, lc, rc, a.num_chunk_per_minibatch, seed=a.srand,
                                        frame_shift=is_train, shuffle=is_train, drop_partial=is_train)
        return (RankShard(from_shards(train, True), rank, world),
                *(from_shards([EgsShard.load(egs_dir / f"{n}.pt")], False) for n in ("valid", "train_diag")))
    data = load_features(a.train_data, ivector_dir)
    nums = chain.num_graphs
    graphs, num_out, fsf = nums.graphs, nums.num_output_frames, nums.frame_subsampling_factor
    if fsf != model.frame_subsampling_factor:
        raise ValueError(f"{a.chain_dir}/num.pt: frame-subsampling-factor {fsf} != the model's")
    usable = [u for u in data.utts if u in graphs]
    held = split_valid(usable, num_utts=a.num_valid_utts, seed=a.srand, utt2uniq=data.utt2uniq)
    if a.egs_type == "e2e":
        def make(utts, train):
            return E2eEgs(data, graphs, num_out, lc, rc, fsf, minibatch_size=a.e2e_minibatch_size, utts=utts,
                          seed=a.srand, frame_shift=train, shuffle=train)
    else:
        if not a.ali:
            raise ValueError("--egs-type chunk needs --ali <ali.pt> (steps/chain/align.sh)")
        ali = Alignment.load(a.ali)
        pdf_map, normalizer = chain.pdf_map, Normalizer(chain.den_fst)

        def make(utts, train):
            utts = [u for u in utts if u in ali.phones]
            return ChunkEgs(data, ali, pdf_map, normalizer, lc, rc, chunk_width=a.chunk_width,
                            num_chunk_per_minibatch=a.num_chunk_per_minibatch, frame_subsampling_factor=fsf,
                            utts=utts, seed=a.srand, frame_shift=train, shuffle=train, drop_partial=train)
    return (RankShard(make(held.train, True), rank, world), make(held.valid, False),
            make(held.train_diagnostic, False))


def main(argv: list[str] | None = None) -> int:
    a = parse_args(argv)
    exp = Path(a.exp_dir)
    (exp / "log").mkdir(parents=True, exist_ok=True)
    ranks, device = ddp.start(a.device)
    rank, world = ranks.rank, ranks.world
    setup_logging(verbose=1 if rank == 0 else 0, log_file=exp / "log" / "train.log" if rank == 0 else None)
    chain_dir = Path(a.chain_dir)
    for f in ("den.pt", "pdf_map.pt") if a.egs_dir else ("den.pt", "num.pt", "pdf_map.pt"):
        if not (chain_dir / f).is_file():
            raise ValueError(f"{chain_dir}: missing {f} (run steps/chain/prepare_e2e.sh)")
    chain = ChainDir.load(chain_dir)
    den, num_pdfs = chain.den_graph, chain.num_pdfs
    ivector_dim = 0 if a.ivector_dir == "none" else _ivector_dim(a.ivector_dir)
    cfg = TdnnfConfig.preset(a.net, num_pdfs, ivector_dim=ivector_dim)
    model = TdnnfModel(cfg, generator=torch.Generator().manual_seed(a.srand))
    if a.input_model:
        init = load_chain_model(a.input_model)
        if init.config.to_dict() != cfg.to_dict():
            raise ValueError(f"--input-model {a.input_model}: its network configuration differs from "
                             f"--net {a.net} with {num_pdfs} pdfs and i-vector dim {ivector_dim}")
        model = init
    try:
        betas = [float(x) for x in a.adam_betas.split(",")]
    except ValueError:
        betas = []
    if len(betas) != 2:
        raise ValueError(f"--adam-betas: expected two comma-separated numbers, got {a.adam_betas!r}")
    tcfg = ChainTrainerConfig(
        num_epochs=a.num_epochs, initial_effective_lrate=a.initial_effective_lrate,
        final_effective_lrate=a.final_effective_lrate, num_jobs_initial=a.num_jobs_initial,
        num_jobs_final=a.num_jobs_final, frames_per_iter=a.frames_per_iter,
        xent_regularize=a.xent_regularize, leaky_hmm_coefficient=a.leaky_hmm_coefficient,
        out_of_range_regularize=a.out_of_range_regularize,
        dropout_schedule=a.dropout_schedule or None, max_param_change=a.max_param_change,
        optimizer=a.optimizer, adam_beta1=betas[0], adam_beta2=betas[1], adam_epsilon=a.adam_epsilon,
        adam_max_change_scale=a.adam_max_change_scale, batchnorm_stats_scale=a.batchnorm_stats_scale,
        batchnorm_recompute_sequences=a.batchnorm_recompute_sequences, lda_minibatches=a.lda_minibatches,
        checkpoint_interval=a.checkpoint_interval, seed=a.srand, bf16=a.bf16)
    train, valid, diag = build_egs(a, model, rank, world)
    if rank == 0:
        log.info("%s egs: %s", a.egs_type, train.egs.summary())
    trainer = ChainTrainer(model, den, tcfg, exp, device)
    if rank == 0:
        n = sum(p.numel() for p in model.parameters())
        log.info("%s network: %d parameters, %d pdfs, context %d/%d, device %s, %d rank(s)",
                 a.net, n, num_pdfs, model.left_context, model.right_context, device, world)
    last = trainer.train(train, valid_egs=valid, train_diag_egs=diag,
                         lda_egs=None if a.input_model else diag, resume=a.resume, max_steps=a.max_steps)
    trainer.ddp_model = trainer.model  # drop the DDP wrapper, then the process group, before the interpreter exits
    ddp.stop()
    if rank == 0:
        print(f"train_chain: {trainer.state.step} minibatches, {len(trainer.state.history)} "
              f"iterations; final train/valid log-prob "
              f"{last.get('train_objf', float('nan')):.4f}/{last.get('valid_objf', float('nan')):.4f}"
              f", xent {last.get('train_xent', float('nan')):.4f}/"
              f"{last.get('valid_xent', float('nan')):.4f}; model {exp}/final.pt")
    return 0


if __name__ == "__main__":
    run_main(main)
