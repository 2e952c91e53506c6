"""Synthetic TED-LIUM release 2 in the real on-disk layout (stage 0 of the recipe).

Stands in for the download of ``egs/tedlium/s5_r2/local/download_data.sh`` and is meant to be read by a
port of ``local/prepare_data.sh`` / ``local/prepare_dict.sh`` unchanged.  Layout::

    TEDLIUM_release2/{train,dev,test}/{sph,stm}/<talk>.{sph,stm}     NIST SPHERE, 16 kHz, 16-bit, mono
    TEDLIUM_release2/TEDLIUM.152k.dic                                 word PH1 PH2 ..., word(2) variants

One talk = one espeak-ng voice (dev/test voices never occur in train) reading seeded English text
(:mod:`ser.corpora.text`), segments separated by pauses in one long sph.  Reproduced quirks of the real
stm files: ``<talk> 1 <talk> <start> <end> <o,f0,male> words`` with 2-decimal times; clitics as
separate tokens (``it 's``); rare ``{NOISE}``/``{BREATH}``/``{COUGH}`` tags (with a noise burst in the
audio), rare ``<sil>`` tokens and ``word(2)`` variant marks; ``inter_segment_gap ... <o,,unknown>
ignore_time_segment_in_scoring`` lines over applause-like noise; on some train lines a trailing
``(<talk>-<n>)`` name; in dev some labels ``<F0_M>``/``<F0_F>``.

Deviations: only ~1 h of train speech by default (the real corpus has 207 h); the lexicon is CMUdict
without stress (the real one is the Cantab TED-LIUM dictionary, same ARPAbet phone set) restricted to
the words used plus a few thousand others.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ser.corpora import build_once
from ser.corpora import text as textgen
from ser.corpora.espeak import Prosody, add_noise, colored_noise, map_fresh_processes, synth_16k, to_pcm16

__all__ = ["TedliumConfig", "make_tedlium", "build_lexicon", "SPLITS", "NAME", "TALK_VOICE_POOL", "IEMOCAP_VOICES"]

log = logging.getLogger(__name__)

NAME = "TEDLIUM_release2"
SPLITS = ("train", "dev", "test")
SR = 16000

# Voices reserved for the IEMOCAP speakers (kept out of the TED-LIUM pool so the corpora share no voice).
IEMOCAP_VOICES = {
    "F": ["en-us+f1", "en-gb-x-rp+steph", "en-us+Annie", "en-029+f4", "en-gb-scotland+belinda"],
    "M": ["en-us+m1", "en-gb-x-rp+m3", "en-us-nyc+m2", "en-gb-scotland+david", "en-029+m6"],
}
_LANGS = ["en-us", "en-gb-x-rp", "en-gb-scotland", "en-us-nyc", "en-029", "en", "en-gb-x-gbclan", "en-gb-x-gbcwmd"]
# Variants with a "breath" line (f2, f3, f5, Alicia, caleb, victor, ...) are left out: their first synthesis in
# a process is not reproducible (espeak-ng's breath noise), which would break byte-identical regeneration.
_MALE = ["m1", "m2", "m3", "m4", "m5", "m6", "m7", "m8", "Andy", "Lee", "travis", "adam", "ian", "john",
         "norbert", "paul", "rob", "robert", "max", "edward", "benjamin", "david"]
_FEMALE = ["f1", "f4", "Andrea", "anika", "linda", "steph", "steph2", "aunty", "Annie", "belinda", "grandma"]
_RESERVED = {v for vs in IEMOCAP_VOICES.values() for v in vs}
TALK_VOICE_POOL: list[tuple[str, str]] = [
    (f"{lang}+{var}", sex) for lang in _LANGS for var, sex in [*((m, "male") for m in _MALE),
                                                               *((f, "female") for f in _FEMALE)]
    if f"{lang}+{var}" not in _RESERVED
]
_FIRST = {"male": ["Aaron", "Ben", "Carl", "David", "Ethan", "Frank", "George", "Henry", "Ian", "James", "Kevin",
                   "Luke", "Mark", "Nathan", "Oscar", "Paul", "Robert", "Simon", "Thomas", "Victor"],
          "female": ["Alice", "Beth", "Clara", "Diana", "Emma", "Fiona", "Grace", "Helen", "Irene", "Julia", "Kate",
                     "Laura", "Maria", "Nora", "Olivia", "Paula", "Rachel", "Sarah", "Tina", "Vera"]}
_LAST = ["Anderson", "Baker", "Carter", "Dawson", "Ellis", "Fisher", "Graham", "Harris", "Irving", "Jensen", "Keller",
         "Lawson", "Morgan", "Nolan", "Owens", "Parker", "Quinn", "Reyes", "Sutton", "Turner", "Walsh", "Young"]
_TAGS = ["{NOISE}", "{BREATH}", "{COUGH}"]
_CLITIC_PRONS = {"'s": ["Z", "S", "IH Z"], "'re": ["ER", "R"], "'m": ["M", "AH M"], "'ve": ["V", "AH V"],
                 "'ll": ["L", "AH L"], "'d": ["D", "AH D"]}
_SPECIAL_ENTRIES = ["<s> SIL", "</s> SIL", "<sil> SIL", "<unk> NSN"]


@dataclass(frozen=True)
class TedliumConfig:
    seed: int = 0
    train_minutes: float = 60.0
    dev_minutes: float = 3.5
    test_minutes: float = 3.5
    talks: tuple[int, int, int] = (12, 4, 4)  # train, dev, test
    extra_lexicon_words: int = 3000

    def minutes(self, split: str) -> float:
        return {"train": self.train_minutes, "dev": self.dev_minutes, "test": self.test_minutes}[split]


@dataclass(frozen=True)
class _TalkJob:
    out_dir: str
    split: str
    talk: str
    voice: str
    sex: str
    seconds: float
    seed: tuple[int, ...]
    variant_words: tuple[str, ...] = field(default=())


def _strip_stress(pron: list[str]) -> str:
    return " ".join(p.rstrip("012") for p in pron)


def lexicon_prons(word: str) -> list[str]:
    """Stress-free ARPAbet pronunciations of ``word`` in order, duplicates removed."""
    if word in _CLITIC_PRONS:
        return list(_CLITIC_PRONS[word])
    out: list[str] = []
    for p in textgen.cmu_dict().get(word, []):
        s = _strip_stress(p)
        if s not in out:
            out.append(s)
    return out


def build_lexicon(seed: int, extra_words: int) -> list[str]:
    """``TEDLIUM.152k.dic`` lines (sorted, C order): grammar vocabulary, clitic tokens, ``extra_words``
    further CMUdict words, and the ``<s>``/``</s>``/``<sil>``/``<unk>`` lines that prepare_dict.sh drops."""
    words = set(textgen.vocabulary()) | set(_CLITIC_PRONS)
    candidates = sorted(w for w in textgen.cmu_dict() if w.isalpha() and w.islower() and 3 <= len(w) <= 12
                        and w not in words)
    rng = np.random.default_rng([seed, 7])
    pick = rng.choice(len(candidates), size=min(extra_words, len(candidates)), replace=False)
    words |= {candidates[i] for i in pick}
    lines = list(_SPECIAL_ENTRIES)
    for w in words:
        prons = lexicon_prons(w)
        if not prons:
            raise ValueError(f"no pronunciation for lexicon word {w!r}")
        for i, p in enumerate(prons):
            lines.append(f"{w} {p}" if i == 0 else f"{w}({i + 1}) {p}")
    return sorted(lines)


def _talk_names(rng: np.random.Generator, sexes: list[str]) -> list[str]:
    names: list[str] = []
    for sex in sexes:
        while True:
            n = (f"{_FIRST[sex][int(rng.integers(len(_FIRST[sex])))]}{_LAST[int(rng.integers(len(_LAST)))]}_"
                 f"{int(rng.integers(2002, 2015))}{'X' if rng.random() < 0.15 else ''}")
            if n not in names:
                names.append(n)
                break
    return names


def _plan(cfg: TedliumConfig, out_dir: Path) -> list[_TalkJob]:
    rng = np.random.default_rng([cfg.seed, 1])
    n_total = sum(cfg.talks)
    if n_total > len(TALK_VOICE_POOL):
        raise ValueError(f"at most {len(TALK_VOICE_POOL)} talks in all (asked {n_total})")
    if min(cfg.talks) < 1:
        raise ValueError(f"every split needs at least one talk (got {cfg.talks})")
    order = rng.permutation(len(TALK_VOICE_POOL))[:n_total]
    voices = [TALK_VOICE_POOL[i] for i in order]
    names = _talk_names(rng, [sex for _, sex in voices])
    variant_words = tuple(sorted(w for w in textgen.vocabulary() if len(lexicon_prons(w)) > 1))
    jobs, k = [], 0
    for s_idx, (split, n) in enumerate(zip(SPLITS, cfg.talks)):
        for t in range(n):
            voice, sex = voices[k]
            jobs.append(_TalkJob(str(out_dir), split, names[k], voice, sex, cfg.minutes(split) * 60.0 / n,
                                 (cfg.seed, 2, s_idx, t), variant_words))
            k += 1
    return jobs


def _fmt(t: float) -> str:
    return f"{t:.2f}"


class _Recording:
    """The audio of one talk being built (float32 pieces), its length so far and its stm lines."""

    def __init__(self, talk: str, rng: np.random.Generator) -> None:
        self.talk, self.rng = talk, rng
        self.pieces: list[np.ndarray] = []
        self.t = 0.0  # current length in seconds
        self.lines: list[tuple[float, str]] = []

    def emit(self, x: np.ndarray) -> None:
        self.pieces.append(x.astype(np.float32))
        self.t += len(x) / SR

    def silence(self, sec: float) -> None:
        self.emit(np.zeros(int(round(sec * SR)), dtype=np.float32))

    def gap(self, sec: float) -> None:
        """An applause-like noise region, excluded from scoring."""
        n = int(round(sec * SR))
        env = np.minimum(1.0, np.minimum(np.arange(n), n - np.arange(n)) / (0.2 * SR)).astype(np.float32)
        t0 = self.t
        self.emit(0.08 * env * colored_noise(n, self.rng, tilt=0.5))
        self.lines.append((t0, f"{self.talk} 1 inter_segment_gap {_fmt(t0)} {_fmt(self.t)} <o,,unknown> "
                               "ignore_time_segment_in_scoring"))

    def tag_noise(self) -> None:
        self.emit(0.05 * colored_noise(int(self.rng.integers(3000, 6000)), self.rng, tilt=0.3))


def _synth_talk(job: _TalkJob) -> tuple[str, str, float, int]:
    """Synthesise one talk; writes ``<split>/sph/<talk>.sph`` and ``<split>/stm/<talk>.stm``."""
    import soundfile as sf

    rng = np.random.default_rng(list(job.seed))
    gen = textgen.SentenceGenerator(rng)
    base = Prosody(rate=int(rng.integers(150, 190)), pitch=int(rng.integers(35, 65)),
                   range=int(rng.integers(35, 70)), volume=100)
    rec = _Recording(job.talk, rng)
    if rng.random() < 0.5:
        rec.gap(float(rng.uniform(1.5, 3.0)))
    rec.silence(float(rng.uniform(0.3, 0.8)))
    speech, n_seg = 0.0, 0
    while speech < job.seconds:
        speech = _talk_segment(job, rec, gen, base, n_seg, speech)
        n_seg += 1
        if speech >= job.seconds:
            break
        if rng.random() < 0.06:
            rec.silence(0.15)
            rec.gap(float(rng.uniform(1.0, 3.0)))
            rec.silence(0.15)
        else:
            rec.silence(float(rng.uniform(0.3, 0.9)))
    if not any("inter_segment_gap" in ln for _, ln in rec.lines):
        rec.silence(0.15)
        rec.gap(float(rng.uniform(1.0, 2.0)))
    rec.silence(float(rng.uniform(0.3, 1.0)))
    audio = np.concatenate(rec.pieces)
    audio = add_noise(audio * np.float32(10 ** (rng.uniform(-8, -2) / 20)), float(rng.uniform(25, 40)), rng,
                      tilt=0.6)
    root = Path(job.out_dir) / job.split
    (root / "sph").mkdir(parents=True, exist_ok=True)
    (root / "stm").mkdir(parents=True, exist_ok=True)
    sf.write(str(root / "sph" / f"{job.talk}.sph"), to_pcm16(audio), SR, format="NIST", subtype="PCM_16")
    lines = sorted(rec.lines, key=lambda x: x[0])
    (root / "stm" / f"{job.talk}.stm").write_text("".join(ln + "\n" for _, ln in lines), encoding="utf-8")
    return job.split, job.talk, speech, n_seg


def _talk_segment(job: _TalkJob, rec: _Recording, gen: textgen.SentenceGenerator, base: Prosody, n_seg: int,
                  speech: float) -> float:
    """One stm segment of 1-3 sentences (and maybe a noise tag) appended to ``rec``; returns the
    seconds of speech so far."""
    rng = rec.rng
    tokens: list[str] = []
    seg_start = rec.t - float(rng.uniform(0.02, 0.12))
    tag_front = rng.random() < 0.03
    if tag_front:
        tokens.append(_TAGS[int(rng.integers(len(_TAGS)))])
        rec.tag_noise()
        rec.silence(0.1)
    n_sent = int(rng.choice([1, 1, 2, 2, 3]))
    for i in range(n_sent):
        words = gen.sentence()
        p = Prosody(rate=base.rate + int(rng.integers(-12, 13)), pitch=base.pitch + int(rng.integers(-5, 6)),
                    range=base.range + int(rng.integers(-8, 9)), volume=100)
        x = synth_16k(" ".join(words), job.voice, p)
        rec.emit(x)
        speech += len(x) / SR
        toks = textgen.tedlium_tokens(words)
        tokens += [f"{w}(2)" if w in job.variant_words and rng.random() < 0.01 else w for w in toks]
        if i + 1 < n_sent:
            if job.split == "train" and rng.random() < 0.05:
                tokens.append("<sil>")
                rec.silence(float(rng.uniform(0.3, 0.5)))
            else:
                rec.silence(float(rng.uniform(0.12, 0.3)))
    if not tag_front and rng.random() < 0.03:
        rec.silence(0.1)
        tokens.append(_TAGS[int(rng.integers(len(_TAGS)))])
        rec.tag_noise()
    seg_end = rec.t + float(rng.uniform(0.02, 0.12))
    male = job.sex == "male"
    label = "<o,f0,male>" if male else "<o,f0,female>"
    if job.split == "dev" and rng.random() < 0.5:
        label = "<F0_M>" if male else "<F0_F>"
    line = f"{job.talk} 1 {job.talk} {_fmt(seg_start)} {_fmt(seg_end)} {label} {' '.join(tokens)}"
    if job.split == "train" and rng.random() < 0.3:
        line += f" ({job.talk}-{n_seg + 1})"
    rec.lines.append((seg_start, line))
    return speech


def make_tedlium(out: str | Path, cfg: TedliumConfig = TedliumConfig(), nj: int = 2) -> dict:
    """Create ``<out>/TEDLIUM_release2`` (built under ``TEDLIUM_release2.tmp``, renamed when complete).

    Skips the work if a complete corpus made with the same config is already there; raises if one made
    with another config is there.  Returns a summary dict.
    """
    def build(tmp: Path) -> dict:
        jobs = _plan(cfg, tmp)
        log.info("synthesising %d TED-LIUM talks with %d jobs", len(jobs), nj)
        results = map_fresh_processes(_synth_talk, jobs, nj)
        (tmp / "TEDLIUM.152k.dic").write_text(
            "".join(ln + "\n" for ln in build_lexicon(cfg.seed, cfg.extra_lexicon_words)), encoding="utf-8")
        return {"corpus": NAME, "talks": {s: sum(r[0] == s for r in results) for s in SPLITS},
                "speech_minutes": {s: round(sum(r[2] for r in results if r[0] == s) / 60, 2) for s in SPLITS},
                "segments": {s: sum(r[3] for r in results if r[0] == s) for s in SPLITS}}

    conf = asdict(cfg)
    conf["talks"] = list(cfg.talks)
    return build_once(Path(out) / NAME, conf, build)
