"""python -m ser.bin._ivector_job <step> [--num-threads T] --key value ...

Not a recipe program (no steps/ wrapper): one job of a step of the i-vector trainers, as the trainers
(steps/online/train_{diag_ubm,ivector_extractor}.sh) start it through $cmd (ser/ivector/parallel.py):
gmm-global-init-from-feats, gmm-global-acc-stats, ivector-extractor-get-stats, ivector-extractor-acc-stats.
"""

from __future__ import annotations

import sys

from ser.cli import run_main, setup_logging
from ser.ivector.parallel import job_main


def main(argv: list[str] | None = None) -> int:
    setup_logging()
    job_main(list(sys.argv[1:] if argv is None else argv))
    return 0


if __name__ == "__main__":
    run_main(main)
