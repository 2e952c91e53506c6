"""steps/chain/prepare_e2e.sh [opts] <train-data-dir> <lang-dir> <out-dir>

Flat-start chain graphs: phone LM, den graph (den.pt, den.fst.txt) and numerator graphs (num.pt), as
Kaldi's steps/nnet3/chain/e2e/prepare_e2e.sh; see ser/chain/prepare_e2e.py.
"""

from __future__ import annotations

import argparse
import sys

from ser.chain.prepare_e2e import prepare_e2e
from ser.cli import run_main, setup_logging, str2bool


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--type", choices=["mono", "biphone"], default="biphone")
    p.add_argument("--tie", type=str2bool, default=True, help="back off rare biphones (true|false)")
    p.add_argument("--min-biphone-count", type=int, default=100)
    p.add_argument("--min-monophone-count", type=int, default=20)
    p.add_argument("--ngram-order", type=int, default=4)
    p.add_argument("--no-prune-ngram-order", type=int, default=3)
    p.add_argument("--num-extra-lm-states", type=int, default=2000)
    p.add_argument("--edge-silprob", type=float, default=0.8)
    p.add_argument("--between-silprob", type=float, default=0.1)
    p.add_argument("--frame-subsampling-factor", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--num-graphs", type=str2bool, default=True,
                   help="write num.pt, every utterance's numerator (false: the egs jobs compile them)")
    p.add_argument("data_dir")
    p.add_argument("lang_dir")
    p.add_argument("out_dir")
    a = p.parse_args(argv)
    setup_logging()
    print(f"prepare_e2e: {a.data_dir} {a.lang_dir} -> {a.out_dir} (--type {a.type})", file=sys.stderr)
    info = prepare_e2e(a.data_dir, a.lang_dir, a.out_dir, a.type, a.tie, a.min_biphone_count,
                       a.min_monophone_count, a.ngram_order, a.no_prune_ngram_order, a.num_extra_lm_states,
                       a.edge_silprob, a.between_silprob, a.frame_subsampling_factor, a.seed, a.num_graphs)
    d, n = info["den"], info.get("num")
    nums = f"numerator graphs {n['graphs']}/{n['utterances']} (skipped {sum(n['skipped'].values())})" if n else \
        "no numerator graphs (--num-graphs false)"
    print(f"prepare_e2e: {d.get('num_pdfs')} pdfs, phone LM {d.get('phone_lm_states')} states, den graph "
          f"{d.get('den_states')} states / {d.get('den_arcs')} arcs; {nums}")
    return 0


if __name__ == "__main__":
    run_main(main)
