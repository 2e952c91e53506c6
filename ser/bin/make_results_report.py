"""Regenerate <exp>/results.md from every <exp>/ser/<system>/results.json.

    steps/ser/make_results_report.sh [exp]

One row per system x protocol: UA, WA, macro-F1 (mean ± std over folds and pooled), 95%
speaker-bootstrap intervals of the mean-of-folds and the pooled UA, paired tests against tdnn_l12
(Holm-adjusted beside the raw p), links to the figures, and the papers' published figures (ser.eval.report).
"""

from __future__ import annotations

import argparse

from ser.cli import run_main, setup_logging
from ser.eval.report import write_results_report


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("exp", nargs="?", default="exp", help="experiment dir (default: exp)")
    a = p.parse_args(argv)
    setup_logging()
    path = write_results_report(a.exp)
    print(path)
    return 0


if __name__ == "__main__":
    run_main(main)
