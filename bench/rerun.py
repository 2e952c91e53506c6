#!/usr/bin/env python3
"""Benchmark: ./run.sh with nothing to do, with the stage stamps against the same re-run without them.

Needs a finished recipe in the repository root (``./run.sh`` once, same ``--config``).  Per stage, times
``./run.sh --stage N --stop-stage N`` as it is (a stage whose stamp exp/log/stage<N>.stamp is current is
skipped in one process) and then with that stage stamp moved aside, so that every step of the stage asks
its own stamp (the reference, measured in the same run; it writes the stage stamp again, which must come
out byte for byte the same: nothing had to be done).  Then times the whole ``./run.sh`` once.  Prints wall
and CPU seconds (the children's user + sys) and the ratio.

    .venv/bin/python bench/rerun.py                  # conf/mini.yaml
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def timed(*args: str) -> tuple[float, float, str]:
    """Wall and CPU seconds of ``./run.sh args`` and its output; stops on a failure."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    r = subprocess.run(["./run.sh", *args], cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if r.returncode:
        sys.exit(f"rerun: ./run.sh {' '.join(args)} failed:\n{r.stdout[-2000:]}{r.stderr[-2000:]}")
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime), r.stdout


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default="conf/mini.yaml")
    p.add_argument("--stages", default="0-9", help="first-last stage (default 0-9)")
    a = p.parse_args()
    first, last = (int(x) for x in a.stages.split("-"))
    cfg = ["--config", a.config]
    print(f"{'stage':>5} {'stamps wall/CPU s':>18} {'per step wall/CPU s':>20} {'ratio (CPU)':>11}  stage stamp")
    tot = [0.0, 0.0, 0.0, 0.0]
    for n in range(first, last + 1):
        st = ROOT / "exp" / "log" / f"stage{n}.stamp"
        w1, c1, out = timed("--stage", str(n), "--stop-stage", str(n), *cfg)
        skipped = f"stage {n}: up to date" in out
        saved = st.read_bytes() if st.exists() else None
        if saved is not None:
            os.replace(st, st.with_name(st.name + ".bench"))
        w2, c2, _ = timed("--stage", str(n), "--stop-stage", str(n), *cfg)
        same = saved is not None and st.exists() and st.read_bytes() == saved
        st.with_name(st.name + ".bench").unlink(missing_ok=True)
        tot = [tot[0] + w1, tot[1] + c1, tot[2] + w2, tot[3] + c2]
        note = ("skipped" if skipped else "asked its steps") + (", rewritten the same" if same else
                                                                ", CHANGED (the recipe was not finished)")
        print(f"{n:>5} {w1:>8.2f} / {c1:<8.2f} {w2:>9.2f} / {c2:<9.2f} {c2 / max(c1, 1e-9):>10.1f}x  {note}")
    print(f"{'sum':>5} {tot[0]:>8.2f} / {tot[1]:<8.2f} {tot[2]:>9.2f} / {tot[3]:<9.2f} {tot[3] / max(tot[1], 1e-9):>10.1f}x")
    w, c, out = timed(*cfg)
    print(f"whole ./run.sh {' '.join(cfg)}: {w:.2f} s wall, {c:.2f} s CPU; {out.count(': up to date (exp/log/stage')} "
          f"stages skipped by their stamps; load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
