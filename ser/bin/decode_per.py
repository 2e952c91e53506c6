"""steps/chain/decode_per.sh [opts] <model.pt> <data> <chain-dir> <lang> <decode-dir>

Phone decoding of a data dir with a chain model: best path through the denominator graph (acwt 1.0)
-> phones; writes per.txt, per_lm_only.txt, per_most_frequent.txt, hyp.txt, ref.txt into <decode-dir>.
See ser/chain/decode.py.
"""

from __future__ import annotations

import argparse

from ser.chain.decode import decode_data_dir
from ser.cli import add_device_argument, run_main, setup_logging
from ser.nnet.model_io import load_chain_model


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--online-ivector-dir", default=None)
    p.add_argument("--train-text", default=None, help="text file for the most-frequent-phone baseline")
    add_device_argument(p)
    p.add_argument("model")
    p.add_argument("data_dir")
    p.add_argument("chain_dir", help="dir with den.pt and pdf_map.pt")
    p.add_argument("lang_dir")
    p.add_argument("decode_dir")
    a = p.parse_args(argv)
    setup_logging()
    stats = decode_data_dir(load_chain_model(a.model, map_location="cpu"), a.data_dir, a.online_ivector_dir, a.chain_dir, a.lang_dir,
                            a.decode_dir, a.train_text, a.device)
    for name, s in stats.items():
        print(f"{name}: {s.line()}")
    return 0


if __name__ == "__main__":
    run_main(main)
