"""NIST SPHERE to WAV on stdout, with the options of Kaldi's ``tools/sph2pipe`` that recipes use
(also ``utils/sph2pipe``, on the PATH once ``path.sh`` is sourced).

    sph2pipe -f wav -p [-c 1|2] [-t beg:end | -s beg:end] <file.sph> [<out.wav>]

TED-LIUM's ``wav.scp`` lines name ``sph2pipe -f wav -p X.sph |`` (ser.prep.tedlium), as Kaldi's
recipes do; sph2pipe is not in Debian, so this stands in for it on the toolkit's own reader
(ser.io.audio, libsndfile's SPHERE support): the samples are those the recipe's feature extraction
reads.  Output: 16-bit PCM WAV (``-p``: PCM, which is all this writes; ``-f rif`` is ``-f wav``).
``-c N`` keeps channel N (1-based); ``-t b:e`` seconds and ``-s b:e`` samples cut the output (an
empty end: to the end of the file), as sph2pipe.  Deviations: shorten-compressed SPHERE (which
libsndfile cannot read) is an error, and the output formats sph/raw/au/aif are not written.
"""

from __future__ import annotations

import argparse
import io
import sys

import numpy as np
import soundfile as sf

from ser.cli import run_main
from ser.features.perturb import to_int16
from ser.io.atomic import atomic_open
from ser.io.audio import read_rxfile


def write_wav(x: np.ndarray, fs: int, out: str | None) -> None:
    """Samples [N, C] in int16 units as 16-bit PCM WAV (rounded, clipped) to ``out``, or stdout when None."""
    buf = io.BytesIO()
    sf.write(buf, to_int16(x.reshape(-1)).reshape(x.shape), fs, format="WAV", subtype="PCM_16")
    if out is None:
        sys.stdout.buffer.write(buf.getvalue())
        sys.stdout.buffer.flush()
    else:
        with atomic_open(out, "wb", encoding=None) as f:  # a killed run leaves no half-written file
            f.write(buf.getvalue())


def _range(s: str, fs: int, unit: float) -> tuple[int, int | None]:
    beg, sep, end = s.partition(":")
    if not sep:
        raise ValueError(f"range {s!r}: expected beg:end")
    return int(round(float(beg or 0) * unit)), (int(round(float(end) * unit)) if end else None)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-f", default="wav", choices=("wav", "rif"), help="output format (only WAV is written)")
    p.add_argument("-p", action="store_true", help="16-bit PCM output (always)")
    p.add_argument("-c", type=int, choices=(1, 2), default=None, help="the one channel to write")
    p.add_argument("-t", default=None, help="beg:end in seconds")
    p.add_argument("-s", default=None, help="beg:end in samples")
    p.add_argument("infile")
    p.add_argument("outfile", nargs="?", default=None)
    a = p.parse_args(argv)
    if a.t and a.s:
        p.error("give -t or -s, not both")
    x, fs = read_rxfile(a.infile, who=a.infile, allow_pipes=False)
    if a.c is not None:
        if a.c > x.shape[1]:
            raise ValueError(f"{a.infile}: -c {a.c}: the file has {x.shape[1]} channel(s)")
        x = x[:, a.c - 1:a.c]
    if a.t or a.s:
        beg, end = _range(a.t, fs, fs) if a.t else _range(a.s, fs, 1)
        x = x[beg:end]
    write_wav(x, fs, a.outfile)
    return 0


if __name__ == "__main__":
    run_main(main)
