"""Chain egs written once, by parallel jobs (Kaldi steps/nnet3/chain/get_egs.sh and e2e/get_egs_e2e.sh);
see ser/train/egs_shards.py for the shard format and steps/chain/get_egs.sh for the whole step.

  python -m ser.bin.get_egs lists [opts] (--ali-dir D | --lang L) <data> <egs-dir>
      the held-out utterances (get_egs.sh --num-utts-subset: valid_uttlist, train_diag_uttlist) and the
      training ones (train_uttlist), as the trainer chooses them, among the utterances with an alignment
      (chunk egs) or with a transcript (e2e egs)
  python -m ser.bin.get_egs job [opts] [--job J | --subset held-out] (--ali-dir D | --lang L)
          <data-split-J> <ivector-dir> <chain-dir> <egs-dir>
      the examples of the training utterances of one split -> <egs-dir>/egs.J.pt (or of a held-out set ->
      <egs-dir>/valid.pt, train_diag.pt): chunks with their
      numerators from the alignment (--ali-dir), or whole utterances with their numerators compiled from
      the transcripts through the lang's lexicon (--lang; Kaldi's compile-train-graphs of prepare_e2e.sh)
  python -m ser.bin.get_egs info --nj N <egs-dir>
      checks the N shards and writes <egs-dir>/info.json (the mark that the egs are complete)
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ser.cli import run_main, setup_logging
from ser.io.atomic import atomic_write_text
from ser.train.egs import EgsConfig, make_chunk_examples, make_e2e_examples, split_valid
from ser.train.egs_shards import EgsShard

LISTS = ("train_uttlist", "valid_uttlist", "train_diag_uttlist")


def _read_list(path: Path) -> list[str]:
    if not path.is_file():
        raise ValueError(f"{path}: no such file (run 'get_egs lists' first)")
    return path.read_text().split()


def _egs_type(a: argparse.Namespace) -> str:
    if bool(a.ali_dir) == bool(a.lang):
        raise ValueError("give --ali-dir (chunk egs) or --lang (whole-utterance e2e egs), one of them")
    return "chunk" if a.ali_dir else "e2e"


def cmd_lists(a: argparse.Namespace) -> None:
    from ser.io.datadir import DataDir
    from ser.train.align import Alignment

    d = DataDir.load(a.data, validate=False)
    if _egs_type(a) == "chunk":
        usable = set(Alignment.load(Path(a.ali_dir) / "ali.pt").phones)
    else:
        usable = {u for u, t in d.text.items() if t.strip()}
    utt2uniq = d.extra("utt2uniq") if d.has("utt2uniq") else None
    held = split_valid([u for u in sorted(d.feats) if u in usable], num_utts=a.num_utts_subset, seed=a.srand,
                       utt2uniq=utt2uniq)
    out = Path(a.egs_dir)
    for name, utts in zip(LISTS, (held.train, held.valid, held.train_diagnostic)):
        atomic_write_text(out / name, "".join(u + "\n" for u in utts))
    print(f"get_egs: {len(held.train)} training, {len(held.valid)} valid, {len(held.train_diagnostic)} "
          f"train-diagnostic utterances -> {out}")


def e2e_numerators(text: dict[str, str], data, lang_dir: str, chain, fsf: int, utts: list[str]):
    """compile-train-graphs + normalization (as ser.chain.prepare_e2e): ({utt: graph}, {utt: output
    frames}) of ``utts``; those without a graph are left out (the egs count them as skipped)."""
    from ser.chain.lang import Lang
    from ser.chain.supervision import Normalizer, make_supervision

    lang, pdf_map, norm = Lang.load(lang_dir), chain.pdf_map, Normalizer(chain.den_fst)
    graphs, num_out = {}, {}
    for u in utts:
        r = make_supervision(text[u].split(), data.num_frames(u), lang, pdf_map, norm, fsf)
        if r.graph is not None:
            graphs[u], num_out[u] = r.graph, r.num_output_frames
    return graphs, num_out


def cmd_job(a: argparse.Namespace) -> None:
    subsets = ("valid", "train_diag") if a.subset == "held-out" else ("train",)
    for subset in subsets:
        make_shard(a, subset)


def make_shard(a: argparse.Namespace, subset: str) -> None:
    from ser.chain.chain_dir import ChainDir
    from ser.chain.supervision import Normalizer
    from ser.io.batching import load_features
    from ser.io.datadir import DataDir
    from ser.nnet.model_io import load_chain_model
    from ser.nnet.tdnnf import TdnnfConfig, TdnnfModel
    from ser.train.align import Alignment

    out = Path(a.egs_dir)
    kind = _egs_type(a)
    wanted = set(_read_list(out / f"{subset}_uttlist"))
    job = a.job - 1 if subset == "train" else 0  # held-out egs: the draws of one process making them
    target = out / (f"egs.{a.job}.pt" if subset == "train" else f"{subset}.pt")
    d = DataDir.load(a.data, validate=False)
    utts = [u for u in sorted(d.feats) if u in wanted]
    chain = ChainDir.load(a.chain_dir)
    if bool(a.model) == bool(a.net):
        raise ValueError("give --model FILE or --net NAME (the network the egs are for), one of them")
    model = load_chain_model(a.model) if a.model else TdnnfModel(TdnnfConfig.preset(a.net, chain.num_pdfs))
    lc, fsf = model.left_context, model.frame_subsampling_factor
    # lazy: the shard gets each utterance's bytes as the ark stores them (compressed stays compressed)
    data = load_features(a.data, None if a.ivector_dir == "none" else a.ivector_dir, utts, lazy=True)
    utts = [u for u in utts if u in data.feats]
    if kind == "chunk":
        shard = make_chunk_examples(data, Alignment.load(Path(a.ali_dir) / "ali.pt"), chain.pdf_map,
                                    Normalizer(chain.den_fst), lc, a.chunk_width, fsf, utts=utts, seed=a.srand,
                                    job=job)
    else:
        graphs, num_out = e2e_numerators(d.text, data, a.lang, chain, fsf, utts)
        shard = make_e2e_examples(data, graphs, num_out, lc, fsf, utts=utts, seed=a.srand, job=job)
    shard.save(target)
    print(f"get_egs: {subset} job {a.job}: {len(shard)} {kind} examples from {len(utts)} utterances "
          f"({shard.num_frames} frames); skipped {shard.skipped or 'none'} -> {target}")


def cmd_info(a: argparse.Namespace) -> None:
    out = Path(a.egs_dir)
    shards = [EgsShard.load(out / f"egs.{j}.pt") for j in range(1, a.nj + 1)]
    jobs = [s.job for s in shards]
    if jobs != list(range(a.nj)):
        raise ValueError(f"{out}: shards of jobs {[j + 1 for j in jobs]}, expected 1..{a.nj}")
    for subset in ("valid", "train_diag"):
        if EgsShard.load(out / f"{subset}.pt").kind != shards[0].kind:
            raise ValueError(f"{out}/{subset}.pt: not {shards[0].kind} egs")
    info = {"nj": a.nj, "kind": shards[0].kind, "num_examples": sum(len(s) for s in shards),
            "num_frames": sum(s.num_frames for s in shards),
            "widths": shards[0].widths, "frame_subsampling_factor": shards[0].frame_subsampling_factor,
            "egs_left_context": shards[0].egs_left_context}
    atomic_write_text(out / "info.json", json.dumps(info, indent=1) + "\n")
    print(f"get_egs: {info['num_examples']} {info['kind']} examples in {a.nj} shards "
          f"({info['num_frames']} frames) -> {out}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    lists = sub.add_parser("lists")
    lists.add_argument("--num-utts-subset", type=int, default=EgsConfig.num_valid_utts)
    lists.add_argument("--srand", type=int, default=0)
    for p_ in (lists, job := sub.add_parser("job")):
        p_.add_argument("--ali-dir", default=None, help="chunk egs: the alignment (steps/chain/align.sh)")
        p_.add_argument("--lang", default=None, help="whole-utterance (e2e) egs: the lang of the numerators")
    for x in ("data", "egs_dir"):
        lists.add_argument(x)
    job.add_argument("--job", type=int, default=1, help="1-based, as Kaldi's JOB")
    job.add_argument("--subset", choices=["train", "held-out"], default="train",
                     help="the training utterances of this split (egs.JOB.pt) or the held-out sets (valid.pt, "
                          "train_diag.pt)")
    job.add_argument("--model", default=None, help="the model the egs are for (its context and subsampling)")
    job.add_argument("--net", default=None, help="... or its network preset (ser.nnet.tdnnf NET_PRESETS)")
    job.add_argument("--chunk-width", default=EgsConfig.chunk_width, help="Kaldi --frames-per-eg")
    job.add_argument("--srand", type=int, default=0)
    for x in ("data", "ivector_dir", "chain_dir", "egs_dir"):
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
