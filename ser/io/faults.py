"""Fault injection for the interruption tests: kill this process at a named point between writes.

``SER_KILL_AT=<pattern>[@<n>]`` makes the process SIGKILL itself the ``n``-th time (default 1) it
reaches a :func:`kill_point` whose label matches ``pattern`` (``fnmatch``: ``rename:*`` matches every
rename, ``rename:*/final.pt`` every final.pt).  Points: ``rename:<parent>/<name>`` (an atomic file or new
directory, complete under its temp name, about to be renamed into place) and ``swap:<parent>/<dir>``
(between the two renames of an atomic directory replacing an existing one).  Unset (always,
outside the tests) a point costs one dictionary lookup.  SIGKILL, not an exception: nothing gets to
clean up, as when a job is killed by the scheduler or the machine goes down.
"""

from __future__ import annotations

import fnmatch
import os
import signal

_hits = 0


def kill_point(label: str) -> None:
    spec = os.environ.get("SER_KILL_AT")
    if not spec:
        return
    global _hits
    pattern, _, n = spec.partition("@")
    if fnmatch.fnmatchcase(label, pattern):
        _hits += 1
        if _hits == int(n or 1):
            os.kill(os.getpid(), signal.SIGKILL)
