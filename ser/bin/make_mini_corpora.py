"""Stage 0: make the embedded synthetic corpora (TED-LIUM r2 and IEMOCAP layouts) with espeak-ng.

Thin CLI over :mod:`ser.corpora.tedlium`, :mod:`ser.corpora.iemocap` and :mod:`ser.corpora.xcorpus`.  Each
corpus is built under ``<out>/<name>.tmp`` and renamed when complete; a corpus already complete with the
same options is skipped.  ``--xcorpus-turns N`` (N > 0) also makes ``IEMOCAP_B``, the cross-corpus test
corpus (other speakers, sentences and recordings; same emotions and layout).

    local/make_mini_corpora.sh --out db [--seed 0] [--tedlium-train-minutes 60] [--iemocap-turns 1000] \
        [--xcorpus-turns 100]
"""

from __future__ import annotations

import argparse
import time

from ser.cli import run_main, setup_logging
from ser.corpora.iemocap import IemocapConfig, make_iemocap
from ser.corpora.tedlium import TedliumConfig, make_tedlium
from ser.corpora.xcorpus import make_xcorpus


def _iemocap_summary(s: dict) -> str:
    return (f"{s['corpus']} {'skipped (complete)' if s['skipped'] else 'made'}: {s['turns']} turns {s['dialogs']} "
            f"dialogs {s['hours']} h labels " + ",".join(f"{k}={v}" for k, v in s["labels"].items()))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="directory that receives TEDLIUM_release2/ and IEMOCAP_full_release/")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--tedlium-train-minutes", type=float, default=60.0, help="train speech, minutes")
    ap.add_argument("--tedlium-dev-minutes", type=float, default=3.5)
    ap.add_argument("--tedlium-test-minutes", type=float, default=3.5)
    ap.add_argument("--tedlium-talks", type=int, nargs=3, default=[12, 4, 4], metavar=("TRAIN", "DEV", "TEST"),
                    help="number of talks (= voices) per split")
    ap.add_argument("--tedlium-extra-lexicon-words", type=int, default=3000)
    ap.add_argument("--iemocap-turns", type=int, default=1000, help="labelled turns in all")
    ap.add_argument("--iemocap-turns-per-dialog", type=int, default=25)
    ap.add_argument("--xcorpus-turns", type=int, default=0,
                    help="labelled turns of IEMOCAP_B, the cross-corpus test corpus (0: not made)")
    ap.add_argument("--xcorpus-turns-per-dialog", type=int, default=10)
    ap.add_argument("--corpora", default="tedlium,iemocap,xcorpus",
                    help="comma list: tedlium,iemocap,xcorpus (xcorpus only with --xcorpus-turns > 0)")
    ap.add_argument("--nj", type=int, default=2, help="parallel synthesis processes")
    args = ap.parse_args(argv)
    setup_logging()
    which = {c.strip() for c in args.corpora.split(",") if c.strip()}
    if not which <= {"tedlium", "iemocap", "xcorpus"}:
        ap.error(f"--corpora: unknown corpus in {args.corpora!r}")
    t0 = time.time()
    parts = []
    if "tedlium" in which:
        s = make_tedlium(args.out, TedliumConfig(
            seed=args.seed, train_minutes=args.tedlium_train_minutes, dev_minutes=args.tedlium_dev_minutes,
            test_minutes=args.tedlium_test_minutes, talks=tuple(args.tedlium_talks),
            extra_lexicon_words=args.tedlium_extra_lexicon_words), nj=args.nj)
        parts.append(f"TEDLIUM_release2 {'skipped (complete)' if s['skipped'] else 'made'}: talks "
                     f"{'/'.join(str(s['talks'][k]) for k in ('train', 'dev', 'test'))} speech min "
                     f"{'/'.join(str(s['speech_minutes'][k]) for k in ('train', 'dev', 'test'))}")
    if "iemocap" in which:
        s = make_iemocap(args.out, IemocapConfig(seed=args.seed, turns=args.iemocap_turns,
                                                 turns_per_dialog=args.iemocap_turns_per_dialog), nj=args.nj)
        parts.append(_iemocap_summary(s))
    if "xcorpus" in which and args.xcorpus_turns > 0:
        s = make_xcorpus(args.out, args.seed, args.xcorpus_turns, args.xcorpus_turns_per_dialog, nj=args.nj)
        parts.append(_iemocap_summary(s))
    print(f"make_mini_corpora: {args.out}: " + "; ".join(parts) + f"; {time.time() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    run_main(main)
