"""Progress and logs (ser/progress.py, ser/jobs.py): no progress bar in a log (plain lines when the stream is
not a terminal), every log starts with the command line and the start time, and a long job prints one line
per interval on the console with its elapsed time (issue 28, point 6)."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
from pathlib import Path

from ser.jobs import open_log
from ser.progress import progress, write

ROOT = Path(__file__).resolve().parents[1]


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_plain_lines_when_not_a_terminal():
    out = io.StringIO()
    assert list(progress(range(25), desc="feats", file=out)) == list(range(25))
    lines = out.getvalue().splitlines()
    assert "\r" not in out.getvalue()
    # one line per 10% (3/25 is 12%: the 10% line), then the count and the elapsed time
    assert [re.sub(r" [\d.]+ s$", "", ln) for ln in lines] == [
        "feats: 12% (3/25)", "feats: 20% (5/25)", "feats: 32% (8/25)", "feats: 40% (10/25)", "feats: 52% (13/25)",
        "feats: 60% (15/25)", "feats: 72% (18/25)", "feats: 80% (20/25)", "feats: 92% (23/25)",
        "feats: 25/25 it in"]
    out = io.StringIO()
    list(progress(iter(range(7)), desc="x", unit="utt", file=out))   # no length: the last line only
    assert re.fullmatch(r"x: 7 utt in [\d.]+ s\n", out.getvalue())
    out = io.StringIO()
    list(progress(range(9), disable=True, file=out))
    write("a message", file=out)
    assert out.getvalue() == "a message\n"


def test_bar_at_a_terminal():
    from tqdm import tqdm

    term = Terminal()
    bar = progress(range(3), desc="feats", file=term)
    assert isinstance(bar, tqdm) and list(bar) == [0, 1, 2]
    assert "\r" in term.getvalue()


def test_tqdm_only_in_ser_progress():
    """One home for progress bars: every other module goes through ser.progress."""
    users = [str(p.relative_to(ROOT)) for p in (ROOT / "ser").rglob("*.py")
             if p.name != "progress.py" and re.search(r"^\s*(from tqdm|import tqdm)", p.read_text(), re.M)]
    assert not users


def test_job_log_has_header_and_no_carriage_return(tmp_path):
    log = tmp_path / "log" / "step.log"
    code = "from ser.progress import progress; print('finished', sum(1 for _ in progress(range(400), desc='utts')))"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "SER_PROGRESS_INTERVAL": "0"}
    r = subprocess.run([sys.executable, "-m", "ser.jobs", str(log), sys.executable, "-c", code],
                       capture_output=True, text=True, env=env, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    text = log.read_text()
    assert "\r" not in text
    lines = text.splitlines()
    assert lines[0].startswith(f"# {sys.executable} -c ") and lines[1].startswith("# Started at ")
    assert "utts: 10% (40/400)" in text and "finished 400" in text
    assert re.match(r"# Ended \(code 0\) at .*, elapsed time \d+ seconds", lines[-1])
    assert r.stderr == ""   # a quick step prints nothing on the console


def test_long_job_prints_progress_on_the_console(tmp_path):
    code = "import time\nfor i in range(4):\n    print(f'iter {i}', flush=True); time.sleep(0.3)"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "SER_PROGRESS_INTERVAL": "0.25"}
    r = subprocess.run([sys.executable, "-m", "ser.jobs", "JOB=1:2", "log/train.JOB.log", sys.executable, "-c", code],
                       capture_output=True, text=True, env=env, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    lines = r.stderr.splitlines()
    assert any(re.fullmatch(r"  log/train\.[12]\.log: \dm\d\ds: iter \d", ln) for ln in lines), lines
    done = sorted(re.sub(r"\.\d\.log: done in \dm\d\ds", ".N.log: done", ln) for ln in lines if "done" in ln)
    assert done == ["  log/train.N.log: done [1/2]", "  log/train.N.log: done [2/2]"]


def test_open_log_writes_the_header(tmp_path):
    with open_log(tmp_path / "train.0.log", ["python", "-m", "ser.bin.train_chain", "a b"]) as f:
        f.write("minibatch 1\n")
    lines = (tmp_path / "train.0.log").read_text().splitlines()
    assert lines[0] == "# python -m ser.bin.train_chain 'a b'" and lines[1].startswith("# Started at ")
    assert lines[-1] == "minibatch 1"


def test_log_tail_reads_the_end_only(tmp_path):
    from ser.jobs import log_tail

    log = tmp_path / "train.log"
    with open_log(log, ["x"]) as f:
        f.write("".join(f"minibatch {i}\n" for i in range(5000)) + "bar 10%\rbar 20%\n")
    assert log_tail(log, 2, max_bytes=64) == log_tail(log, 2) == ["minibatch 4999", "bar 20%"]
    small = tmp_path / "small.log"
    with open_log(small, ["x"]) as f:
        f.write("one line\n")
    assert log_tail(small, 4, max_bytes=1 << 20) == ["one line"]   # the header is not a line of the job's
