"""Kaldi data directories: read, write, validate, fix, subset and split.

Mirrors egs/wsj/s5/utils/{validate_data_dir.sh, fix_data_dir.sh, subset_data_dir.sh,
split_data.sh, utt2spk_to_spk2utt.pl, data/modify_speaker_info.sh}.  A data dir is a folder of ``<key> <value>``
text files sorted in ``LC_ALL=C`` order (Python's ``sorted`` on ``str`` is the same
order for UTF-8 ids):

    wav.scp         <reco> <path or command |>
    segments        <utt> <reco> <start-s> <end-s>       (optional)
    text            <utt> <words...>                     (optional)
    utt2spk/spk2utt speakers (spk2utt is always derived from utt2spk)
    feats.scp       <utt> <ark:offset>                   (after stage 3)
    utt2num_frames, utt2dur, reco2dur, ...               (optional)

Any other per-utterance ``utt2*`` file (utt2emo, utt2session...) is carried
along by subset/split/fix.  Kaldi requires that utt2spk sorted by speaker is
also sorted by utterance (speaker ids act as utterance-id prefixes); we check it.
"""

from __future__ import annotations

import logging
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from ser.io.atomic import atomic_dir, atomic_open, finish_swap
from ser.io.stamp import Stamp
from ser.io.text import read_lines

log = logging.getLogger(__name__)

# per-utterance files with a single value (carried by subset/split/fix)
_PER_UTT_SKIP = {"utt2spk", "text", "segments", "feats.scp"}
_KNOWN = {"wav.scp", "segments", "text", "utt2spk", "spk2utt", "feats.scp"}


class DataDirError(ValueError):
    pass


def read_kv(path: str | os.PathLike, *, allow_empty_value: bool = False) -> dict[str, str]:
    """``<key> <rest of line>`` → dict; errors name the file and line."""
    out: dict[str, str] = {}
    try:
        lines = read_lines(path, DataDirError)
    except OSError as e:
        raise DataDirError(f"cannot read {path}: {e.strerror}") from e
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        parts = line.split(maxsplit=1)
        if len(parts) == 1 and not allow_empty_value:
            raise DataDirError(f"{path}:{n}: line has a key but no value: {line!r}")
        key, val = parts[0], (parts[1].strip() if len(parts) == 2 else "")
        if key in out:
            raise DataDirError(f"{path}:{n}: duplicate key {key!r}")
        out[key] = val
    return out


def write_kv(path: str | os.PathLike, table: dict[str, str]) -> None:
    with atomic_open(path) as f:
        for k in sorted(table):
            v = table[k]
            f.write(f"{k} {v}\n" if v != "" else f"{k}\n")


def fmt_time(t: float) -> str:
    """Seconds with at most 4 decimals, trailing zeros dropped (Kaldi prints %g-style times)."""
    return (f"{t:.4f}".rstrip("0").rstrip(".")) or "0"


def spk2utt_of(utt2spk: dict[str, str]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for u in sorted(utt2spk):
        out.setdefault(utt2spk[u], []).append(u)
    return dict(sorted(out.items()))


def modify_speaker_info(utt2spk: dict[str, str], utts_per_spk_max: int = 0, seconds_per_spk_max: float = 0.0,
                        utt2dur: dict[str, float] | None = None) -> dict[str, str]:
    """``utils/data/modify_speaker_info.sh`` (``--respect-speaker-info true``): each speaker's
    utterances, in sorted order, are cut into consecutive groups of at most ``utts_per_spk_max``
    utterances and ``seconds_per_spk_max`` seconds (``utt2dur``; a group always takes one
    utterance), the pseudo-speakers ``<spk>-<j>`` with j zero-padded to the width of the number
    of groups of that speaker (utils/data/internal/modify_speaker_info.py).  A limit <= 0 is
    off; with both off the speakers are kept (Kaldi's script is then simply not run)."""
    if utts_per_spk_max <= 0 and seconds_per_spk_max <= 0:
        return dict(utt2spk)
    if seconds_per_spk_max > 0:
        missing = [u for u in utt2spk if utt2dur is None or u not in utt2dur]
        if missing:
            raise DataDirError(f"modify_speaker_info: no duration for utterance {missing[0]!r}")
    out: dict[str, str] = {}
    for spk, utts in spk2utt_of(utt2spk).items():
        groups: list[list[str]] = [[]]
        dur = 0.0
        for u in utts:
            ud = utt2dur[u] if seconds_per_spk_max > 0 else 0.0  # type: ignore[index]
            if groups[-1] and ((0 < utts_per_spk_max == len(groups[-1]))
                               or (seconds_per_spk_max > 0 and dur + ud > seconds_per_spk_max)):
                groups.append([])
                dur = 0.0
            groups[-1].append(u)
            dur += ud
        width = len(str(len(groups)))
        for j, g in enumerate(groups, 1):
            for u in g:
                out[u] = f"{spk}-{j:0{width}d}"
    return out


@dataclass
class Segment:
    reco: str
    start: float
    end: float


@dataclass
class DataDir:
    """In-memory data dir.  ``extras`` maps a file name (e.g. ``utt2emo``) to its table."""

    utt2spk: dict[str, str]
    wav: dict[str, str] = field(default_factory=dict)
    segments: dict[str, Segment] | None = None
    text: dict[str, str] = field(default_factory=dict)
    feats: dict[str, str] = field(default_factory=dict)
    extras: dict[str, dict[str, str]] = field(default_factory=dict)
    path: Path | None = None

    # ---- views --------------------------------------------------------------------------
    @property
    def utts(self) -> list[str]:
        return sorted(self.utt2spk)

    @property
    def spk2utt(self) -> dict[str, list[str]]:
        return spk2utt_of(self.utt2spk)

    def extra(self, name: str) -> dict[str, str]:
        if name not in self.extras:
            raise DataDirError(f"{self.path}: no file {name}")
        return self.extras[name]

    def has(self, name: str) -> bool:
        return name in self.extras

    def utt2num_frames(self) -> dict[str, int]:
        return {u: int(v) for u, v in self.extra("utt2num_frames").items()}

    # ---- I/O ----------------------------------------------------------------------------
    @classmethod
    def load(cls, path: str | os.PathLike, validate: bool = True) -> "DataDir":
        p = Path(path)
        finish_swap(p)  # a writer killed while swapping the directory in
        if not (p / "utt2spk").is_file():
            raise DataDirError(f"{p}: not a data dir (no utt2spk)")
        d = cls(utt2spk=read_kv(p / "utt2spk"), path=p)
        if (p / "wav.scp").is_file():
            d.wav = read_kv(p / "wav.scp")
        if (p / "segments").is_file():
            d.segments = {}
            for u, v in read_kv(p / "segments").items():
                f = v.split()
                if len(f) != 3:
                    raise DataDirError(f"{p / 'segments'}: bad line for {u!r}: {v!r}")
                try:
                    d.segments[u] = Segment(f[0], float(f[1]), float(f[2]))
                except ValueError as e:
                    raise DataDirError(f"{p / 'segments'}: bad times for {u!r}: {v!r}") from e
        if (p / "text").is_file():
            d.text = read_kv(p / "text", allow_empty_value=True)
        if (p / "feats.scp").is_file():
            d.feats = read_kv(p / "feats.scp")
        for f in sorted(p.iterdir()):
            if f.is_file() and f.name not in _KNOWN and not f.name.startswith(".") and not f.name.endswith(".tmp"):
                if f.name.startswith(("utt2", "reco2", "spk2")) or f.name.endswith(".scp"):
                    d.extras[f.name] = read_kv(f, allow_empty_value=True)
        if validate:
            d.validate()
        return d

    def write(self, path: str | os.PathLike, replace: bool = False, files: dict[str, str] | None = None) -> Path:
        """Write the tables, and ``files`` (name -> text: stm, a stamp ...), as ONE atomic change of the
        directory: a killed writer leaves the old directory or the new one, never a mix.
        ``replace=True``: a fresh directory (data prep); otherwise anything else already in it (stm,
        logs, ark files, stamps) is kept."""
        path = Path(path)
        with atomic_dir(path, update=not replace) as tmp:
            self._write_tables(tmp)
            for name, text in (files or {}).items():
                (tmp / name).unlink(missing_ok=True)  # a hard link to the old dir's file (update=True)
                (tmp / name).write_text(text, encoding="utf-8")
        self.path = path
        return path

    def _write_tables(self, d: Path) -> None:
        tables: dict[str, dict[str, str] | None] = {
            "utt2spk": self.utt2spk,
            "spk2utt": {s: " ".join(us) for s, us in self.spk2utt.items()},
            "wav.scp": self.wav or None,
            "segments": None if self.segments is None else
            {u: f"{s.reco} {fmt_time(s.start)} {fmt_time(s.end)}" for u, s in self.segments.items()},
            "text": self.text or None,
            "feats.scp": self.feats or None,
            **self.extras,
        }
        for name, table in tables.items():
            if table is None:
                (d / name).unlink(missing_ok=True)
            else:
                write_kv(d / name, table)
        for split in d.glob("split*"):  # cached splits are stale now
            if split.is_dir():
                shutil.rmtree(split)

    # ---- checks (utils/validate_data_dir.sh) ----------------------------------------------
    def validate(self, need_text: bool = False, need_feats: bool = False) -> None:
        where = self.path or "<data dir>"
        if not self.utt2spk:
            raise DataDirError(f"{where}: utt2spk is empty")
        utts = set(self.utt2spk)
        # speaker-sort consistency (Kaldi: speaker-ids must act as prefixes of utt-ids)
        by_spk = [u for _, u in sorted((s, u) for u, s in self.utt2spk.items())]
        if by_spk != sorted(utts):
            bad = next(u for u, v in zip(by_spk, sorted(utts)) if u != v)
            raise DataDirError(
                f"{where}: utt2spk is not sorted consistently by speaker and utterance (first offender {bad!r}); "
                "make speaker-ids prefixes of utterance-ids"
            )
        if self.segments is not None:
            if set(self.segments) != utts:
                raise DataDirError(f"{where}: segments and utt2spk disagree ({_diff(self.segments, utts)})")
            for u, s in self.segments.items():
                if self.wav and s.reco not in self.wav:
                    raise DataDirError(f"{where}/segments: utterance {u!r} refers to recording {s.reco!r} not in wav.scp")
                if not (0 <= s.start < s.end):
                    raise DataDirError(f"{where}/segments: utterance {u!r} has bad times {s.start} {s.end}")
        elif self.wav and set(self.wav) != utts:
            raise DataDirError(f"{where}: wav.scp and utt2spk disagree ({_diff(self.wav, utts)})")
        if (self.text or need_text) and set(self.text) != utts:
            raise DataDirError(f"{where}: text and utt2spk disagree ({_diff(self.text, utts)})")
        if (self.feats or need_feats) and set(self.feats) != utts:
            raise DataDirError(f"{where}: feats.scp and utt2spk disagree ({_diff(self.feats, utts)})")
        for name, table in self.extras.items():
            if name.startswith("utt2") and not set(table) <= utts:
                raise DataDirError(f"{where}/{name}: has utterances not in utt2spk ({_diff(table, utts)})")

    # ---- transforms -------------------------------------------------------------------------
    def subset(self, utts) -> "DataDir":
        """utils/subset_data_dir.sh --utt-list: keep ``utts`` (unknown ids are an error)."""
        keep = set(utts)
        unknown = keep - set(self.utt2spk)
        if unknown:
            raise DataDirError(f"{self.path}: subset asks for unknown utterances, e.g. {sorted(unknown)[0]!r}")
        return self._restrict(keep)

    def _restrict(self, keep: set[str]) -> "DataDir":
        def f(t: dict) -> dict:
            return {k: v for k, v in t.items() if k in keep}

        segs = f(self.segments) if self.segments is not None else None
        recos = {s.reco for s in segs.values()} if segs is not None else keep
        extras = {}
        for name, t in self.extras.items():
            if name.startswith("utt2"):
                extras[name] = f(t)
            elif name.startswith("reco2"):
                extras[name] = {k: v for k, v in t.items() if k in recos}
            elif name.startswith("spk2"):
                spks = {self.utt2spk[u] for u in keep}
                extras[name] = {k: v for k, v in t.items() if k in spks}
            else:  # other *.scp keyed by utterance
                extras[name] = f(t)
        return DataDir(
            utt2spk=f(self.utt2spk),
            wav={k: v for k, v in self.wav.items() if k in recos},
            segments=segs,
            text=f(self.text),
            feats=f(self.feats),
            extras=extras,
            path=self.path,
        )

    def fix(self) -> "DataDir":
        """utils/fix_data_dir.sh: keep utterances present in every per-utterance file; log what went."""
        keep = set(self.utt2spk)
        for name, t in (("text", self.text), ("feats.scp", self.feats)):
            if t:
                keep &= set(t)
        if self.segments is not None:
            keep &= {u for u, s in self.segments.items() if not self.wav or s.reco in self.wav}
        elif self.wav:
            keep &= set(self.wav)
        dropped = len(self.utt2spk) - len(keep)
        if dropped:
            log.warning("fix_data_dir %s: dropped %d of %d utterances not present in every file",
                        self.path, dropped, len(self.utt2spk))
        return self._restrict(keep)

    def split(self, n: int, out_root: str | os.PathLike | None = None) -> list[Path]:
        """utils/split_data.sh: ``<dir>/split<n>/{1..n}``, whole speakers per part, balanced by utterances.

        Returns the part paths; an up-to-date split is reused.
        """
        if self.path is None and out_root is None:
            raise DataDirError("split: data dir has no path")
        spk2utt = self.spk2utt
        if n < 1 or n > len(spk2utt):
            raise DataDirError(f"{self.path}: cannot split {len(spk2utt)} speakers into {n} parts")
        root = Path(out_root) if out_root is not None else self.path / f"split{n}"
        parts = [root / str(i + 1) for i in range(n)]
        stamp = root / ".done"
        src_mtime = max((f.stat().st_mtime for f in self.path.iterdir() if f.is_file()), default=0) if self.path else 0
        if stamp.exists() and stamp.stat().st_mtime >= src_mtime and all((p / "utt2spk").exists() for p in parts):
            return parts
        # contiguous speaker ranges with ~equal utterance counts (split_scp.pl --utt2spk)
        spks = list(spk2utt)
        total = sum(len(v) for v in spk2utt.values())
        groups: list[list[str]] = [[] for _ in range(n)]
        acc, g = 0, 0
        for i, s in enumerate(spks):
            remaining_spk = len(spks) - i
            if g < n - 1 and groups[g] and (acc >= total * (g + 1) / n or remaining_spk <= n - 1 - g):
                g += 1
            groups[g].append(s)
            acc += len(spk2utt[s])
        for p, grp in zip(parts, groups):
            self.subset([u for s in grp for u in spk2utt[s]]).write(p, replace=True)
        root.mkdir(parents=True, exist_ok=True)
        stamp.touch()
        return parts


def _diff(a, b) -> str:
    a, b = set(a), set(b)
    only_a, only_b = sorted(a - b), sorted(b - a)
    msg = []
    if only_a:
        msg.append(f"{len(only_a)} extra, e.g. {only_a[0]!r}")
    if only_b:
        msg.append(f"{len(only_b)} missing, e.g. {only_b[0]!r}")
    return "; ".join(msg)


STAMP = ".stamp"  # the stamp of the step that made a data dir (ser.io.stamp)


def up_to_date(stamp: "Stamp") -> bool:
    """The data dir holding ``stamp`` was made with the stamp's options and inputs and validates."""
    if not stamp.current():
        return False
    try:
        DataDir.load(stamp.path.parent)
    except DataDirError:
        return False
    return True
