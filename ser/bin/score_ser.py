"""Score an emotion system directory and regenerate the experiment's results report.

    steps/ser/score.sh [--protocol P] [--set S] <data-dir-with-utt2emo> <system-dir>

Validates ``<system-dir>/labels.txt`` and every ``<fold>/{utt2pred,utt2post}`` against
``<data-dir>/utt2emo`` and writes ``results.json``, ``results.md`` and ``confusion.png``
into the system dir (ser.eval.scoring).  When the system dir is ``<exp>/ser/<system>``,
``<exp>/results.md`` is regenerated from all scored systems (ser.eval.report).
--set / --protocol fill in what the system's meta.json does not say (a disagreement
with meta.json is an error); the set defaults to the data dir's name.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ser.cli import run_main, setup_logging
from ser.eval.report import write_results_report
from ser.eval.scoring import score_system


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--protocol", default=None, help="cross-validation protocol, e.g. session or speaker")
    p.add_argument("--set", dest="set_name", default=None, help="data set name (default: the data dir's name)")
    p.add_argument("data", help="data dir holding utt2emo (or the utt2emo file)")
    p.add_argument("system_dir", help="exp/ser/<system>")
    a = p.parse_args(argv)
    setup_logging()
    res = score_system(a.system_dir, a.data, set_name=a.set_name, protocol=a.protocol)
    system_dir = Path(a.system_dir).resolve()
    report = None
    if system_dir.parent.name == "ser":
        report = write_results_report(system_dir.parent.parent)
    m, s, pooled = res["mean"], res["std"], res["pooled"]
    std = "n/a" if s["ua"] is None else f"{100 * s['ua']:.1f}"
    print(f"{res['system']}: UA {100 * m['ua']:.1f} ± {std} over {len(res['folds'])} fold(s), "
          f"pooled UA {100 * pooled['ua']:.1f} [{100 * pooled['ua_ci95'][0]:.1f}, {100 * pooled['ua_ci95'][1]:.1f}] "
          f"({pooled['bootstrap']['clusters']}s resampled), "
          f"WA {100 * pooled['wa']:.1f}, macro-F1 {100 * pooled['macro_f1']:.1f} "
          f"-> {Path(a.system_dir) / 'results.md'}" + (f", {report}" if report else ""))
    return 0


if __name__ == "__main__":
    run_main(main)
