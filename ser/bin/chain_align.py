"""steps/chain/align.sh [--online-ivector-dir D] [--egs-dir E] [--device auto] <data> <chain-dir> <model.pt> <ali-dir>

Viterbi alignment of each utterance's flat-start numerator graph with a chain model (Kaldi's
steps/nnet3/align.sh for chain models); writes <ali-dir>/ali.pt.  A no-op while ali.pt is newer than
the model.  With ``--egs-dir`` (the whole-utterance egs of steps/chain/get_egs.sh --lang) the utterances,
their features and numerators are those of the shards (training and valid; the train-diagnostic ones are
training utterances), read one shard at a time; otherwise <data>'s features and <chain-dir>/num.pt.
See ser/train/align.py.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ser.chain.chain_dir import ChainDir
from ser.cli import add_device_argument, run_main, setup_logging
from ser.io.batching import load_features
from ser.nnet.model_io import load_chain_model
from ser.train.align import Alignment, align_data


def align_shards(model, egs_dir: str, pdf_map, out: Path, max_batch_frames: int, device: str) -> Alignment:
    """align_data over each whole-utterance shard of ``egs_dir`` in turn; one ali.pt for all."""
    from ser.train.egs_shards import EgsShard, shard_paths

    parts = []
    for path in [*shard_paths(egs_dir), Path(egs_dir) / "valid.pt"]:
        sh = EgsShard.load(path)
        if sh.kind != "e2e":
            raise ValueError(f"{path}: {sh.kind} egs; alignment needs whole-utterance egs (get_egs.sh --lang)")
        graphs = {sh.fs.feats.keys[int(u)]: sh.graphs[i] for i, u in enumerate(sh.utt_idx.tolist())}
        parts.append(align_data(model, sh.fs, graphs, pdf_map, max_batch_frames=max_batch_frames, device=device))
    ali = Alignment({u: p for a in parts for u, p in a.phones.items()},
                    {u: s for a in parts for u, s in a.phone_start.items()},
                    {u: p for a in parts for u, p in a.pdfs.items()}, {u: v for a in parts for u, v in a.logprob.items()},
                    parts[0].frame_subsampling_factor, pdf_map.num_pdfs)
    ali.save(out)
    return ali


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--online-ivector-dir", default=None)
    p.add_argument("--egs-dir", default=None, help="whole-utterance egs (steps/chain/get_egs.sh --lang)")
    add_device_argument(p)
    p.add_argument("--max-batch-frames", type=int, default=20000)
    p.add_argument("data")
    p.add_argument("chain_dir", help="dir with num.pt (whole-utterance numerators) and pdf_map.pt")
    p.add_argument("model")
    p.add_argument("ali_dir")
    a = p.parse_args(argv)
    setup_logging()
    out = Path(a.ali_dir) / "ali.pt"
    if out.is_file() and out.stat().st_mtime >= Path(a.model).stat().st_mtime:
        print(f"{out} is up to date with {a.model}; not re-aligning")
        return 0
    model = load_chain_model(a.model).to(a.device)
    chain = ChainDir.load(a.chain_dir)
    if a.egs_dir:
        ali = align_shards(model, a.egs_dir, chain.pdf_map, out, a.max_batch_frames, a.device)
    else:
        data = load_features(a.data, a.online_ivector_dir, lazy=True)  # each batch read when aligned
        ali = align_data(model, data, chain.num_graphs.graphs, chain.pdf_map, out, max_batch_frames=a.max_batch_frames,
                         device=a.device)
    print(f"chain_align: aligned {len(ali)} utterances with {a.model} -> {out}")
    return 0


if __name__ == "__main__":
    run_main(main)
