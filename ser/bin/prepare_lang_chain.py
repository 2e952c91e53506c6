"""steps/prepare_lang_chain.sh [--sil-prob 0.5] <dict-dir> <oov-word> <lang-dir>

Chain lang dir (phones, words, lexicon, topo) from data/local/dict: Kaldi's utils/prepare_lang.sh
(position-independent phones) + steps/nnet3/chain/gen_topo.py; see ser/chain/lang.py.
"""

from __future__ import annotations

import argparse

from ser.chain.lang import prepare_lang
from ser.cli import run_main, setup_logging


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sil-prob", type=float, default=0.5)
    p.add_argument("dict_dir")
    p.add_argument("oov_word")
    p.add_argument("lang_dir")
    a = p.parse_args(argv)
    setup_logging()
    if not 0.0 <= a.sil_prob < 1.0:
        raise ValueError("--sil-prob must be in [0, 1)")
    lang = prepare_lang(a.dict_dir, a.oov_word, a.lang_dir, a.sil_prob)
    print(f"prepare_lang_chain: {a.lang_dir}: {lang.num_phones} phones ({len(lang.silence)} silence), "
          f"{len(lang.lexicon)} words, {sum(len(v) for v in lang.lexicon.values())} pronunciations")
    return 0


if __name__ == "__main__":
    run_main(main)
