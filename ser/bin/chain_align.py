"""steps/chain/align.sh [--online-ivector-dir D] [--device auto] <data> <chain-dir> <model.pt> <ali-dir>

Viterbi alignment of each utterance's flat-start numerator graph with a chain model (Kaldi's
steps/nnet3/align.sh for chain models); writes <ali-dir>/ali.pt.  A no-op while ali.pt is newer than
the model.  See ser/train/align.py.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from ser.chain.topo import PdfMap
from ser.cli import add_device_argument, run_main, setup_logging
from ser.train.align import align_data
from ser.train.chain_trainer import load_chain_model
from ser.train.egs import load_egs_data, load_num_graphs


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
    data = load_egs_data(a.data, a.online_ivector_dir)
    graphs, _, _ = load_num_graphs(Path(a.chain_dir) / "num.pt")
    pdf_map = PdfMap.from_state_dict(torch.load(Path(a.chain_dir) / "pdf_map.pt", weights_only=True))
    ali = align_data(model, data, graphs, pdf_map, out, max_batch_frames=a.max_batch_frames, device=a.device)
    print(f"chain_align: aligned {len(ali)} utterances with {a.model} -> {out}")
    return 0


if __name__ == "__main__":
    run_main(main)
