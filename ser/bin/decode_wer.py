"""python -m ser.bin.decode_wer [opts] [--job J --num-jobs N] <model.pt> <graph-dir> <data> <lat.J.pt>

One decoding job of steps/chain/decode.sh: lattices of job J's share of the utterances of <data> on
<graph-dir>/HCLG.fst with Kaldi's lattice-simple-decoder, plus the no-acoustics baseline's words.
See ser/chain/decode_wer.py.
"""

from __future__ import annotations

import argparse
import time

from ser.chain.decode_wer import decode_job
from ser.cli import add_device_argument, run_main, setup_logging
from ser.nnet.model_io import load_chain_model


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--online-ivector-dir", default=None)
    p.add_argument("--beam", type=float, default=15.0)
    p.add_argument("--lattice-beam", type=float, default=8.0)
    p.add_argument("--max-active", type=int, default=7000, help="of the no-acoustics one-best search")
    p.add_argument("--post-decode-acwt", type=float, default=10.0, help="acoustic scale of the written lattices")
    p.add_argument("--job", type=int, default=1, help="this job's number, 1..num-jobs")
    p.add_argument("--num-jobs", type=int, default=1, help="jobs sharing the utterances (balanced by frames)")
    add_device_argument(p)
    p.add_argument("model")
    p.add_argument("graph_dir")
    p.add_argument("data_dir")
    p.add_argument("out")
    a = p.parse_args(argv)
    setup_logging()
    t0 = time.time()
    s = decode_job(load_chain_model(a.model, map_location="cpu"), a.data_dir, a.online_ivector_dir, a.graph_dir, a.out, a.beam, a.lattice_beam,
                   a.max_active, a.device, a.post_decode_acwt, a.job, a.num_jobs)
    print(f"decode_wer: {a.out}: {s['utts']} utterances ({s['failed']} without lattice), {s['frames']} frames, "
          f"{s['lattice_arcs']} lattice arcs, {time.time() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    run_main(main)
