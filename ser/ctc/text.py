"""DeepSpeech's alphabet (``data/alphabet.txt``: space, a-z, apostrophe) and transcript normalisation.

Kaldi TED-LIUM transcripts (``data/tedlium_*/text``) are lower-case words with ``'`` inside contractions,
plus non-speech tokens in brackets (``[BREATH]``, ``[NOISE]``, ``<unk>``).  :func:`normalize_transcript`
lower-cases, removes the bracketed tokens (counted by name) and every other character outside the
alphabet (counted by character), and collapses spaces -- DeepSpeech's importers likewise drop samples or
characters that ``data/alphabet.txt`` cannot encode.  The CTC blank is the output after the alphabet.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field

__all__ = ["ALPHABET", "BLANK", "TextStats", "normalize_transcript", "encode", "decode_ids", "ctc_min_frames"]

ALPHABET = " abcdefghijklmnopqrstuvwxyz'"  # DeepSpeech's data/alphabet.txt, in its order
BLANK = len(ALPHABET)  # the last output of the network (ser.nnet.deepspeech sizes its output from this)
_INDEX = {c: i for i, c in enumerate(ALPHABET)}
_NON_SPEECH = re.compile(r"^(\[[^\]]*\]|<[^>]*>)$")


@dataclass
class TextStats:
    """What normalisation removed: non-speech tokens by name, other characters by character."""

    tokens_dropped: Counter = field(default_factory=Counter)
    chars_dropped: Counter = field(default_factory=Counter)

    def summary(self) -> str:
        toks = ", ".join(f"{k} x{v}" for k, v in self.tokens_dropped.most_common()) or "none"
        chars = ", ".join(f"{k!r} x{v}" for k, v in self.chars_dropped.most_common()) or "none"
        return f"non-speech tokens dropped: {toks}; characters dropped: {chars}"


def normalize_transcript(text: str, stats: TextStats | None = None) -> str:
    """The transcript in the alphabet: lower case, non-speech tokens and other characters removed."""
    words = []
    for tok in text.split():
        if _NON_SPEECH.match(tok):
            if stats is not None:
                stats.tokens_dropped[tok] += 1
            continue
        kept = []
        for c in tok.lower():
            if c in _INDEX and c != " ":
                kept.append(c)
            elif stats is not None:
                stats.chars_dropped[c] += 1
        if kept:
            words.append("".join(kept))
    return " ".join(words)


def encode(text: str) -> list[int]:
    """Label ids of a normalised transcript; a character outside the alphabet is a ValueError."""
    try:
        return [_INDEX[c] for c in text]
    except KeyError as e:
        raise ValueError(f"character {e.args[0]!r} is not in the alphabet {ALPHABET!r}") from None


def decode_ids(ids: list[int]) -> str:
    return "".join(ALPHABET[i] for i in ids)


def ctc_min_frames(labels: list[int]) -> int:
    """Fewest frames a CTC path for ``labels`` needs: one per label plus a blank between repeats."""
    return len(labels) + sum(1 for a, b in zip(labels, labels[1:]) if a == b)
