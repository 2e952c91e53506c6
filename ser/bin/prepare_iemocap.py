"""local/prepare_iemocap.sh [--sessions "1 2 3 4 5"] <IEMOCAP_full_release dir> <data root>

Writes <data root>/iemocap_all, iemocap_4cls_exc, iemocap_4cls_hapexc, iemocap_agree, iemocap_impro_agree.
Every session named by --sessions (default all five) must be there and have turns with audio.
See ser/prep/iemocap.py for the label sets and the speaker / utterance-id conventions.
"""

from __future__ import annotations

import argparse

from ser.cli import run_main, setup_logging
from ser.prep.iemocap import prepare_iemocap


def parse_sessions(s: str) -> list[int] | None:
    """``"1 2 3"`` or ``"1,2,3"`` -> [1, 2, 3]; empty -> None (all five)."""
    try:
        return [int(x) for x in s.replace(",", " ").split()] or None
    except ValueError:
        raise ValueError(f"--sessions: expected session numbers, got {s!r}") from None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sessions", default="", help="sessions to use, e.g. '1 2 3' or 1,2,3 (default: all five)")
    p.add_argument("corpus")
    p.add_argument("data_root")
    a = p.parse_args(argv)
    setup_logging()
    stats = prepare_iemocap(a.corpus, a.data_root, parse_sessions(a.sessions))
    for name, c in stats.items():
        labels = {k: v for k, v in sorted(c.items()) if len(k) == 3}
        print(f"{name}: {'up to date: ' if c['up_to_date'] else ''}{sum(labels.values())} utterances {labels}")
    return 0


if __name__ == "__main__":
    run_main(main)
