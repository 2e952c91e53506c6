"""steps/chain/make_word_lm.sh [--order N] [--min-counts "c2 c3 ..."] <text> <lang-dir> <out.arpa[.gz]>

Word n-gram LM (interpolated Kneser-Ney, ARPA) of a data dir's transcripts over the lang's words
(others -> <unk>): the stand-in for Kaldi's local/ted_train_lm.sh.  See ser/chain/word_lm.py.
"""

from __future__ import annotations

import argparse

from ser.chain.lang import Lang
from ser.chain.word_lm import train_kneser_ney
from ser.cli import run_main, setup_logging
from ser.io.text import read_lines


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--order", type=int, default=4)
    p.add_argument("--min-counts", default="", help="count cut-offs of orders 2..order (empty: none)")
    p.add_argument("text", help="a data dir's text (<utt> <words...>)")
    p.add_argument("lang_dir")
    p.add_argument("out")
    a = p.parse_args(argv)
    setup_logging()
    try:
        min_counts = [int(x) for x in a.min_counts.split()]
    except ValueError:
        raise ValueError(f"--min-counts: integers expected, got {a.min_counts!r}") from None
    lang = Lang.load(a.lang_dir)
    sents = [line.split()[1:] for line in read_lines(a.text) if line.strip()]
    lm = train_kneser_ney(sents, a.order, lang.lexicon, min_counts)
    lm.write(a.out)
    sizes = ", ".join(f"{len(lm.ngrams[n])} {n}-grams" for n in sorted(lm.ngrams))
    print(f"make_word_lm: {a.out}: order {a.order}, {sizes} from {len(sents)} sentences")
    return 0


if __name__ == "__main__":
    run_main(main)
