"""Data-dir side of Kaldi's data augmentation (the signal side is ser.features.perturb).

Mirrors egs/wsj/s5/utils/perturb_data_dir_speed.sh, utils/data/perturb_data_dir_speed_3way.sh
and utils/data/perturb_data_dir_volume.sh (+ internal/perturb_volume.py):

* speed ``f``: recording, utterance and speaker ids get the prefix ``sp<f>-``
  (the 1.0 copy of a 3-way perturbation keeps its ids), wav.scp entries get
  ``sox -t wav - -t wav - speed <f> |`` appended, segment times are divided by
  ``f`` and printed with 2 decimals, segments with end ≤ start + 0.01 are dropped;
* volume: each recording's entry gets ``sox --vol <v> -t wav - -t wav - |`` with
  ``v ~ U(0.125, 2)`` drawn after ``random.seed(0)`` in wav.scp order; ``reco2vol``
  records the factors, and a dir that already has it is left alone (as Kaldi); the dir changes in
  one atomic step (DataDir.write), so a kill cannot leave ``--vol`` pipes without ``reco2vol``.
"""

from __future__ import annotations

import logging
import shlex
from dataclasses import replace

from ser.features.perturb import draw_volume_factors
from pathlib import Path

from ser.io.datadir import STAMP, DataDir, DataDirError, Segment, up_to_date
from ser.io.stamp import Stamp, dir_files

log = logging.getLogger(__name__)


def _pipe(rx: str, effect: str) -> str:
    """``rx`` (a path or a pipeline) piped through sox ``effect``; a path is shell-quoted (it may hold spaces)."""
    rx = rx.strip()
    if rx.endswith("|"):
        return f"{rx} sox {effect} -t wav - -t wav - |" if effect.startswith("--") else f"{rx} sox -t wav - -t wav - {effect} |"
    rx = shlex.quote(rx)
    if effect.startswith("--"):
        return f"sox {effect} -t wav {rx} -t wav - |"
    return f"sox -t wav {rx} -t wav - {effect} |"


def _fmt_factor(f: float) -> str:
    return f"{f:g}" if f != int(f) else f"{f:.1f}"


def speed_perturb_dir(d: DataDir, factor: float, prefix_one: bool = False) -> DataDir:
    if factor == 1.0 and not prefix_one:
        return d
    pre = f"sp{_fmt_factor(factor)}-"
    effect = f"speed {_fmt_factor(factor)}"
    segs = None
    if d.segments is not None:
        segs = {}
        for u, s in d.segments.items():
            a, b = round(s.start / factor, 2), round(s.end / factor, 2)
            if b <= a + 0.01:
                log.warning("speed %s: segment %s too short after perturbation; dropped", factor, u)
                continue
            segs[pre + u] = Segment(pre + s.reco, a, b)
    keep = set(segs) if segs is not None else None

    def m(t: dict[str, str]) -> dict[str, str]:
        out = {pre + k: v for k, v in t.items()}
        return {k: v for k, v in out.items() if keep is None or k in keep}

    extras = {}
    for name, t in d.extras.items():
        if name == "spk2gender":
            extras[name] = {pre + k: v for k, v in t.items()}
        elif name in ("utt2dur", "reco2dur"):
            extras[name] = {pre + k: f"{float(v) / factor:.4f}" for k, v in t.items()}
        elif name.startswith("utt2") and name not in ("utt2num_frames",):
            extras[name] = m(t)
        elif name.startswith("reco2") and name != "reco2vol":
            extras[name] = {pre + k: v for k, v in t.items()}
    return DataDir(
        utt2spk={k: pre + v for k, v in m(d.utt2spk).items()},
        wav={pre + r: _pipe(x, effect) for r, x in d.wav.items()},
        segments=segs,
        text=m(d.text),
        extras=extras,
    )


def combine(dirs: list[DataDir]) -> DataDir:
    """utils/combine_data.sh: union; ids must not collide."""
    out = DataDir(utt2spk={}, segments={} if all(x.segments is not None for x in dirs) else None)
    for x in dirs:
        dup = set(out.utt2spk) & set(x.utt2spk)
        if dup:
            raise DataDirError(f"combine: utterance {sorted(dup)[0]!r} in two dirs")
        out.utt2spk.update(x.utt2spk)
        out.wav.update(x.wav)
        out.text.update(x.text)
        if out.segments is not None:
            out.segments.update(x.segments)
        for name, t in x.extras.items():
            out.extras.setdefault(name, {}).update(t)
    return out


def speed_perturb_3way(d: DataDir, factors=(0.9, 1.0, 1.1)) -> DataDir:
    """utils/data/perturb_data_dir_speed_3way.sh.  utt2uniq maps every copy to its source utterance
    (Kaldi's perturb_data_dir_speed.sh writes it): held-out validation data and combined short
    segments keep the copies of one recording together."""
    if not d.has("utt2uniq"):
        d = replace(d, extras={**d.extras, "utt2uniq": {u: u for u in d.utt2spk}})
    return combine([speed_perturb_dir(d, f) for f in factors])


def speed_perturb_3way_dir(src: str | Path, dst: str | Path, factors=(0.9, 1.0, 1.1)) -> tuple[DataDir, bool]:
    """``perturb_data_dir_speed_3way.sh <src> <dst>``: returns (dst, whether it was made now).

    ``dst`` is made in one atomic step with a stamp of the factors and of every file of ``src``; a dst
    with the same stamp is kept (other factors, or a changed src, rebuild it)."""
    src, dst = Path(src), Path(dst)
    stamp = Stamp(dst / STAMP, {"speed_factors": [float(f) for f in factors]}, dir_files(src))
    if up_to_date(stamp):
        return DataDir.load(dst), False
    d = speed_perturb_3way(DataDir.load(src), factors)
    d.validate()
    d.write(dst, replace=True, files={STAMP: stamp.text()})
    stamp.committed()
    return d, True


def volume_perturb_dir(d: DataDir, low: float = 0.125, high: float = 2.0) -> DataDir:
    if d.has("reco2vol"):
        log.info("%s: already volume-perturbed (reco2vol exists); not perturbing again", d.path)
        return d
    vols = draw_volume_factors(sorted(d.wav), low, high)
    d.wav = {r: _pipe(x, f"--vol {vols[r]:.6f}") for r, x in d.wav.items()}
    d.extras["reco2vol"] = {r: f"{v:.6f}" for r, v in vols.items()}
    return d
