"""Chain chunk egs written once, by parallel jobs (Kaldi steps/nnet3/chain/get_egs.sh); see
ser/train/egs_shards.py for the shard format and steps/chain/get_egs.sh for the whole step.

  python -m ser.bin.get_egs lists [opts] <data> <ali-dir> <egs-dir>
      the held-out utterances (get_egs.sh --num-utts-subset: valid_uttlist, train_diag_uttlist) and the
      training ones (train_uttlist), as the trainer chooses them
  python -m ser.bin.get_egs job [opts] --job J <data-split-J> <ivector-dir> <chain-dir> <ali-dir> <egs-dir>
      the chunks of the training utterances of one split -> <egs-dir>/egs.J.pt
  python -m ser.bin.get_egs info --nj N <egs-dir>
      checks the N shards and writes <egs-dir>/info.json (the mark that the egs are complete)
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ser.cli import run_main, setup_logging
from ser.io.atomic import atomic_write_text
from ser.train.egs import EgsConfig, make_chunk_examples, split_valid
from ser.train.egs_shards import ChunkShard

LISTS = ("train_uttlist", "valid_uttlist", "train_diag_uttlist")


def _read_list(path: Path) -> list[str]:
    if not path.is_file():
        raise ValueError(f"{path}: no such file (run 'get_egs lists' first)")
    return path.read_text().split()


def cmd_lists(a: argparse.Namespace) -> None:
    from ser.io.datadir import DataDir
    from ser.train.align import Alignment

    d = DataDir.load(a.data, validate=False)
    aligned = set(Alignment.load(Path(a.ali_dir) / "ali.pt").phones)
    usable = [u for u in sorted(d.feats) if u in aligned]
    utt2uniq = d.extra("utt2uniq") if d.has("utt2uniq") else None
    held = split_valid(usable, num_utts=a.num_utts_subset, seed=a.srand, utt2uniq=utt2uniq)
    out = Path(a.egs_dir)
    for name, utts in zip(LISTS, (held.train, held.valid, held.train_diagnostic)):
        atomic_write_text(out / name, "".join(u + "\n" for u in utts))
    print(f"get_egs: {len(held.train)} training, {len(held.valid)} valid, {len(held.train_diagnostic)} "
          f"train-diagnostic utterances -> {out}")


def cmd_job(a: argparse.Namespace) -> None:
    from ser.chain.chain_dir import ChainDir
    from ser.chain.supervision import Normalizer
    from ser.io.batching import load_features
    from ser.io.datadir import DataDir
    from ser.nnet.model_io import load_chain_model
    from ser.train.align import Alignment

    out = Path(a.egs_dir)
    train = set(_read_list(out / "train_uttlist"))
    utts = [u for u in sorted(DataDir.load(a.data, validate=False).feats) if u in train]
    model = load_chain_model(a.model)
    chain = ChainDir.load(a.chain_dir)
    data = load_features(a.data, None if a.ivector_dir == "none" else a.ivector_dir, utts)
    shard = make_chunk_examples(data, Alignment.load(Path(a.ali_dir) / "ali.pt"), chain.pdf_map,
                                Normalizer(chain.den_fst), model.left_context, a.chunk_width,
                                model.frame_subsampling_factor, utts=[u for u in utts if u in data.feats],
                                seed=a.srand, job=a.job - 1)
    shard.save(out / f"egs.{a.job}.pt")
    print(f"get_egs: job {a.job}: {len(shard)} chunks from {len(utts)} utterances ({shard.num_frames} frames); "
          f"skipped {shard.skipped or 'none'} -> {out}/egs.{a.job}.pt")


def cmd_info(a: argparse.Namespace) -> None:
    out = Path(a.egs_dir)
    shards = [ChunkShard.load(out / f"egs.{j}.pt") for j in range(1, a.nj + 1)]
    jobs = [s.job for s in shards]
    if jobs != list(range(a.nj)):
        raise ValueError(f"{out}: shards of jobs {[j + 1 for j in jobs]}, expected 1..{a.nj}")
    info = {"nj": a.nj, "num_chunks": sum(len(s) for s in shards), "num_frames": sum(s.num_frames for s in shards),
            "widths": shards[0].widths, "frame_subsampling_factor": shards[0].frame_subsampling_factor,
            "egs_left_context": shards[0].egs_left_context}
    atomic_write_text(out / "info.json", json.dumps(info, indent=1) + "\n")
    print(f"get_egs: {info['num_chunks']} chunks in {a.nj} shards ({info['num_frames']} frames) -> {out}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    lists = sub.add_parser("lists")
    lists.add_argument("--num-utts-subset", type=int, default=EgsConfig.num_valid_utts)
    lists.add_argument("--srand", type=int, default=0)
    for x in ("data", "ali_dir", "egs_dir"):
        lists.add_argument(x)
    job = sub.add_parser("job")
    job.add_argument("--job", type=int, required=True, help="1-based, as Kaldi's JOB")
    job.add_argument("--model", required=True, help="the model the egs are for (its context and subsampling)")
    job.add_argument("--chunk-width", default=EgsConfig.chunk_width, help="Kaldi --frames-per-eg")
    job.add_argument("--srand", type=int, default=0)
    for x in ("data", "ivector_dir", "chain_dir", "ali_dir", "egs_dir"):
        job.add_argument(x)
    info = sub.add_parser("info")
    info.add_argument("--nj", type=int, required=True)
    info.add_argument("egs_dir")
    a = p.parse_args(argv)
    setup_logging()
    {"lists": cmd_lists, "job": cmd_job, "info": cmd_info}[a.cmd](a)
    return 0


if __name__ == "__main__":
    run_main(main)
