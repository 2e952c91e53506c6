"""local/prepare_dict.sh [--text data/tedlium_train/text ...] [--no-cmudict] <TEDLIUM.152k.dic> <data/local/dict>

egs/tedlium/s5_r2/local/prepare_dict.sh: drops <s>, </s>, <unk>; strips (N) variant markers and stress;
silence phones SIL NSN, optional silence SIL; adds "<unk> NSN".  Words of the --text files missing from the
dictionary get CMUdict pronunciations (stress stripped) when their phones exist.  See ser/chain/lang.py.
"""

from __future__ import annotations

import argparse

from ser.chain.lang import prepare_dict
from ser.cli import run_main, setup_logging


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--text", action="append", default=[], help="Kaldi text file(s) whose words need prons")
    p.add_argument("--no-cmudict", action="store_true", help="do not look up missing words in CMUdict")
    p.add_argument("dic")
    p.add_argument("dict_dir")
    a = p.parse_args(argv)
    setup_logging()
    s = prepare_dict(a.dic, a.dict_dir, a.text, not a.no_cmudict)
    print(f"prepare_dict: {a.dict_dir}: {s['lexicon_entries']} lexicon entries ({s['dic_entries']} from the dic, "
          f"{s['cmudict_entries']} from CMUdict), {s['nonsilence_phones']} nonsilence phones, "
          f"{s['oov_words']} text words left to <unk>")
    return 0


if __name__ == "__main__":
    run_main(main)
