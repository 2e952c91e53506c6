"""steps/chain/align.sh [--online-ivector-dir D] [--device auto] <data> <chain-dir> <model.pt> <ali-dir>

Viterbi alignment of each utterance's flat-start numerator graph with a chain model (Kaldi's
steps/nnet3/align.sh for chain models); writes <ali-dir>/ali.pt.  A no-op while ali.pt is newer than
the model.  See ser/train/align.py.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ser.chain.chain_dir import ChainDir
from ser.cli import add_device_argument, run_main, setup_logging
from ser.io.batching import load_features
from ser.nnet.model_io import load_chain_model
from ser.train.align import align_data


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--online-ivector-dir", default=None)
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
    data = load_features(a.data, a.online_ivector_dir)
    chain = ChainDir.load(a.chain_dir)
    ali = align_data(model, data, chain.num_graphs.graphs, chain.pdf_map, out, max_batch_frames=a.max_batch_frames, device=a.device)
    print(f"chain_align: aligned {len(ali)} utterances with {a.model} -> {out}")
    return 0


if __name__ == "__main__":
    run_main(main)
