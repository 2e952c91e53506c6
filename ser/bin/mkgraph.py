"""utils/mkgraph.sh <lang-dir> <chain-dir> <arpa> <graph-dir>

HCLG of the chain model (Kaldi's utils/mkgraph.sh --self-loop-scale 1.0): G from the ARPA file
(kaldilm), L from the lang's lexicon, left-biphone C, chain-topology H; writes <graph-dir>/HCLG.fst
(OpenFst binary, readable by kaldifst), words.txt and the ARPA it was built from (lm.arpa[.gz], for
rescoring).  See ser/chain/mkgraph.py.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from ser.chain.chain_dir import ChainDir
from ser.chain.lang import Lang
from ser.chain.mkgraph import make_g, make_hclg
from ser.cli import run_main, setup_logging
from ser.io.atomic import atomic_open, tmp_path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("lang_dir")
    p.add_argument("chain_dir", help="dir with pdf_map.pt (stage 5)")
    p.add_argument("arpa")
    p.add_argument("graph_dir")
    a = p.parse_args(argv)
    setup_logging()
    lang = Lang.load(a.lang_dir)
    words = Path(a.lang_dir) / "words.txt"
    if not words.is_file():
        raise ValueError(f"{a.lang_dir}: no words.txt")
    pdf_map = ChainDir.load(a.chain_dir).pdf_map
    hclg, sizes = make_hclg(lang, words, make_g(a.arpa, words), pdf_map)
    out = Path(a.graph_dir)
    out.mkdir(parents=True, exist_ok=True)
    tmp = tmp_path(out / "HCLG.fst")
    hclg.write(str(tmp))
    tmp.replace(out / "HCLG.fst")
    for src, name in ((words, "words.txt"), (Path(a.arpa), "lm.arpa" + (".gz" if a.arpa.endswith(".gz") else ""))):
        with atomic_open(out / name, "wb", encoding=None) as f, open(src, "rb") as g:
            shutil.copyfileobj(g, f)
    print("mkgraph: " + ", ".join(f"{k} {v} states" for k, v in sizes.items()) + f" -> {out}/HCLG.fst")
    return 0


if __name__ == "__main__":
    run_main(main)
