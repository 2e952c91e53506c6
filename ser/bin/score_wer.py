"""python -m ser.bin.score_wer [opts] <data> <graph-dir> <decode-dir>

Scoring of steps/chain/decode.sh (Kaldi's steps/score_kaldi.sh + utils/best_wer.sh): best paths of
<decode-dir>/lat.*.pt over LM weights and word-insertion penalties against <data>/stm (<unk> removed);
writes wer_LMWT_WIP, wer (the best), scoring/best.txt, wer_no_acoustics, wer_lm_only.  With --rescore-arpa the lattices'
first-pass LM scores (<graph-dir>/lm.arpa[.gz]) are replaced by that ARPA's first, and the results go to
--out-dir (Kaldi's decode_<set>_rescore).  See ser/chain/decode_wer.py.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ser.chain.decode_wer import LmRescorer, score_decode_dir
from ser.cli import run_main, setup_logging


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--min-lmwt", type=int, default=7)
    p.add_argument("--max-lmwt", type=int, default=17)
    p.add_argument("--word-ins-penalty", default="0.0,0.5,1.0", help="comma- or space-separated")
    p.add_argument("--rescore-arpa", default="", help="a second ARPA to rescore the lattices with")
    p.add_argument("--out-dir", default=None, help="where the scores go (default: <decode-dir>)")
    p.add_argument("data_dir")
    p.add_argument("graph_dir")
    p.add_argument("decode_dir")
    a = p.parse_args(argv)
    setup_logging()
    try:
        wips = [float(x) for x in a.word_ins_penalty.replace(",", " ").split()]
    except ValueError:
        raise ValueError(f"--word-ins-penalty: numbers expected, got {a.word_ins_penalty!r}") from None
    if not wips:
        raise ValueError("--word-ins-penalty: no penalty given")
    stm = Path(a.data_dir) / "stm"
    if not stm.is_file():
        raise ValueError(f"{a.data_dir}: no stm to score against")
    words = Path(a.graph_dir) / "words.txt"
    old = [p for p in (Path(a.graph_dir) / "lm.arpa", Path(a.graph_dir) / "lm.arpa.gz") if p.is_file()]
    if not old:
        raise ValueError(f"{a.graph_dir}: no lm.arpa[.gz] (the first-pass LM, utils/mkgraph.sh copies it)")
    rescorer = None
    if a.rescore_arpa:
        from ser.chain.mkgraph import read_symbols

        if not Path(a.rescore_arpa).is_file():
            raise ValueError(f"--rescore-arpa: no such file: {a.rescore_arpa}")
        rescorer = LmRescorer(old[0], a.rescore_arpa, {i: w for w, i in read_symbols(words).items()})
    r = score_decode_dir(a.decode_dir, stm, words, a.min_lmwt, a.max_lmwt, wips, a.out_dir, rescorer, old[0])
    print(f"score_wer: {r['best']}   (no acoustics: graph {r['no_acoustics']}; LM, reference length "
          f"{r['lm_only']})")
    return 0


if __name__ == "__main__":
    run_main(main)
