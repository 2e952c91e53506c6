"""The sox commands of Kaldi's data-dir pipelines, on the toolkit's reader and effects (also ``utils/sox``,
on the PATH once ``path.sh`` is sourced).

    sox [--vol V] [-t wav] <in.wav | -> -t wav - [speed F]

These are the commands ``wav.scp`` lines of perturbed data dirs name (ser.prep.perturb, as Kaldi's
utils/data/perturb_data_dir_speed_3way.sh and perturb_data_dir_volume.sh write them); ser.io.audio
interprets them in-process, and this program runs them in a shell, so that other tools (Kaldi, lhotse)
read the samples the recipe trained on: ``speed`` and ``--vol`` are ser.features.perturb's (libsoxr
resampling, as sox's ``speed``), the output is 16-bit PCM WAV on stdout, rounded and clipped.
Deviation: sox adds TPDF dither when it requantises to 16 bits; this rounds (as the recipe's reader
sees the samples unquantised, the two differ by at most half a step per stage).  Any other command is
handed to the system's sox if one is installed (later on the PATH), else it is an error.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from ser.bin.sph2pipe import write_wav
from ser.cli import run_main
from ser.features.perturb import sox_effects
from ser.io.audio import AudioError, _parse_sox, _read_bytes, read_rxfile

PROG = "sox"


def _system_sox() -> str | None:
    """Another sox on the PATH than utils/sox (this program's wrapper), if any."""
    here = (Path(__file__).resolve().parents[2] / "utils" / "sox").resolve()
    for d in os.environ.get("PATH", "").split(os.pathsep):
        c = shutil.which("sox", path=d) if d else None
        if c and Path(c).resolve() != here:
            return c
    return None


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        src, effects = _parse_sox(["sox", *args], "sox")
        for i, e in enumerate(effects):  # only the effects ser.features.perturb applies
            if e not in ("--vol", "speed") and (i == 0 or effects[i - 1] not in ("--vol", "speed")):
                raise AudioError(f"unsupported sox option {e!r}")
    except AudioError as e:
        other = _system_sox()
        if other is not None and argv is None:
            os.execv(other, [other, *args])
        raise AudioError(f"{e}; utils/sox runs only 'sox [--vol V] [-t wav] IN -t wav - [speed F]' "
                         "(install sox for others)") from None
    if src is None:
        x, fs = _read_bytes(sys.stdin.buffer.read(), "stdin")
    else:
        x, fs = read_rxfile(src, who=src, allow_pipes=False)
    write_wav(sox_effects(x, fs, effects, src or "stdin"), fs, None)
    return 0


if __name__ == "__main__":
    run_main(main)
