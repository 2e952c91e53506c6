"""Word n-gram LM of the ASR transcripts in ARPA format (the first-pass LM of word decoding).

A stand-in for Kaldi's egs/tedlium/s5_r2/local/ted_train_lm.sh, which trains a pruned 4-gram with
pocolm on the TED-LIUM LM text: here interpolated Kneser-Ney (Chen & Goodman 1998, one discount
D = n1 / (n1 + 2 n2) per order), written in ARPA backoff form:

* sentences get ``<s>`` / ``</s>``; words outside ``vocab`` become ``<unk>``;
* the highest order and every n-gram starting with ``<s>`` use raw counts, lower orders the
  continuation counts N1+(. w_2..w_n) (as SRILM ``-kndiscount -interpolate`` and KenLM lmplz);
* p(w|h) = (max(c(h,w) - D, 0) + D N1+(h .) p(w|h')) / c(h), with h' the history without its first
  word; the unigram backs off to the uniform distribution over the vocabulary (``</s>`` and ``<unk>``
  included, ``<s>`` excluded: log10 prob -99 as SRILM writes it);
* pruning: count cut-offs per order >= 2 (``min_counts``: an n-gram whose (raw or continuation)
  count is below its order's cut-off is dropped, unless it is the history of a kept longer n-gram,
  which ARPA needs).  Deviation: pocolm prunes by relative entropy to a size.
* backoff weights normalise every history exactly: bow(h) = (1 - sum_{kept w} p(w|h)) /
  (1 - sum_{kept w} p_backoff(w|h')), so the ARPA model sums to one over the vocabulary.

:func:`arpa_prob` evaluates an ARPA model (any ARPA file, e.g. Kaldi's 4gram_small.arpa.gz) with the
standard backoff rule; the tests check the normalisation with it.
"""

from __future__ import annotations

import gzip
import math
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

from ser.io.atomic import atomic_open

BOS, EOS, UNK = "<s>", "</s>", "<unk>"
LOG10_ZERO = -99.0

__all__ = ["ArpaLm", "train_kneser_ney", "read_arpa", "arpa_prob"]


@dataclass
class ArpaLm:
    """n-grams by order: ngrams[n][words] = (log10 prob, log10 backoff weight or None)."""

    ngrams: dict[int, dict[tuple[str, ...], tuple[float, float | None]]]

    @property
    def order(self) -> int:
        return max(self.ngrams)

    def vocab(self) -> list[str]:
        return [w for (w,) in self.ngrams[1]]

    def write(self, path: str | Path) -> None:
        """ARPA text (gzip when the name ends in .gz), written atomically."""
        lines = ["", "\\data\\"] + [f"ngram {n}={len(self.ngrams[n])}" for n in sorted(self.ngrams)]
        for n in sorted(self.ngrams):
            lines += ["", f"\\{n}-grams:"]
            for words, (lp, bow) in sorted(self.ngrams[n].items()):
                s = f"{lp:.6g}\t{' '.join(words)}"
                lines.append(s if bow is None else f"{s}\t{bow:.6g}")
        lines += ["", "\\end\\", ""]
        text = "\n".join(lines)
        if str(path).endswith(".gz"):
            with atomic_open(path, "wb", encoding=None) as f:
                f.write(gzip.compress(text.encode("utf-8"), mtime=0))
        else:
            with atomic_open(path, "w") as f:
                f.write(text)


def _discount(counts: Iterable[int], order: int) -> float:
    coc = Counter(c for c in counts if c <= 2)
    n1, n2 = coc[1], coc[2]
    if n1 == 0 or n1 + 2 * n2 == 0:
        return 0.5  # no singletons (tiny text): a fixed discount
    return min(max(n1 / (n1 + 2 * n2), 1e-3), 0.999)


def _kn_counts(sentences: Sequence[Sequence[str]], order: int) -> dict[int, Counter]:
    """Raw counts of the highest order and of n-grams starting with <s>; continuation counts else."""
    raw: dict[int, Counter] = {n: Counter() for n in range(1, order + 1)}
    for s in sentences:
        toks = [BOS, *s, EOS]
        for n in range(1, order + 1):
            for i in range(len(toks) - n + 1):
                g = tuple(toks[i:i + n])
                if g != (BOS,):
                    raw[n][g] += 1
    counts: dict[int, Counter] = {order: raw[order]}
    for n in range(order - 1, 0, -1):
        cont: Counter = Counter()
        for g in raw[n + 1]:
            cont[g[1:]] += 1  # one distinct left extension
        counts[n] = Counter({g: (c if g[0] == BOS else cont[g]) for g, c in raw[n].items()})
    return counts


def train_kneser_ney(sentences: Iterable[Sequence[str]], order: int, vocab: Iterable[str],
                     min_counts: Sequence[int] = ()) -> ArpaLm:
    """Interpolated Kneser-Ney ARPA model of ``sentences`` (lists of words) over ``vocab``
    (+ ``</s>``, ``<unk>``); ``min_counts[k]`` is the count cut-off of order k + 2."""
    if order < 1:
        raise ValueError(f"word LM: order must be >= 1, got {order}")
    if len(min_counts) not in (0, order - 1):
        raise ValueError(f"word LM: {len(min_counts)} count cut-offs for order {order} (need {order - 1})")
    V = sorted(set(vocab) - {BOS, EOS, UNK, "<eps>"}) + [EOS, UNK]
    known = set(V)
    sents = [[w if w in known else UNK for w in s] for s in sentences]
    if not sents:
        raise ValueError("word LM: no training sentences")
    counts = _kn_counts(sents, order)
    disc = {n: _discount(counts[n].values(), n) for n in counts}
    tot: dict[int, Counter] = {n: Counter() for n in counts}
    n1p: dict[int, Counter] = {n: Counter() for n in counts}
    for n, cn in counts.items():
        for g, c in cn.items():
            tot[n][g[:-1]] += c
            n1p[n][g[:-1]] += 1
    cache: dict[tuple, float] = {}

    def p_interp(h: tuple[str, ...], w: str) -> float:
        key = (h, w)
        if key in cache:
            return cache[key]
        n = len(h) + 1
        if n == 1:
            t, D = tot[1][()], disc[1]
            p = (max(counts[1].get((w,), 0) - D, 0.0) + D * n1p[1][()] / len(V)) / t
        elif tot[n].get(h, 0) == 0:
            p = p_interp(h[1:], w)
        else:
            t, D = tot[n][h], disc[n]
            p = (max(counts[n].get(h + (w,), 0) - D, 0.0) + D * n1p[n][h] * p_interp(h[1:], w)) / t
        cache[key] = p
        return p

    # kept n-grams: cut-offs, then every history of a kept n-gram
    kept: dict[int, set] = {1: {(w,) for w in V} | {(BOS,)}}
    for n in range(2, order + 1):
        cut = min_counts[n - 2] if min_counts else 1
        kept[n] = {g for g, c in counts[n].items() if c >= cut}
    for n in range(order, 2, -1):
        kept[n - 1] |= {g[:-1] for g in kept[n]}
    ngrams: dict[int, dict] = {}
    probs: dict[int, dict[tuple, float]] = {}
    for n in range(1, order + 1):
        probs[n] = {g: (0.0 if g == (BOS,) else p_interp(g[:-1], g[-1])) for g in kept[n]}
    lm = ArpaLm({n: {g: (LOG10_ZERO if p <= 0 else math.log10(p), None) for g, p in probs[n].items()}
                 for n in probs})
    # backoff weights, lowest order first (bow of an (n-1)-gram normalises its n-gram successors)
    followers: dict[int, dict[tuple, list[str]]] = {n: defaultdict(list) for n in range(2, order + 1)}
    for n in range(2, order + 1):
        for g in kept[n]:
            followers[n][g[:-1]].append(g[-1])
    for n in range(1, order):
        for h, (lp, _) in list(lm.ngrams[n].items()):
            ws = followers[n + 1].get(h)
            if not ws:
                continue
            num = 1.0 - sum(probs[n + 1][h + (w,)] for w in ws)
            den = 1.0 - sum(10.0 ** arpa_prob(lm, h[1:], w) for w in ws)
            bow = max(num, 1e-12) / max(den, 1e-12)
            lm.ngrams[n][h] = (lp, math.log10(bow))
    return lm


def arpa_prob(lm: ArpaLm, history: Sequence[str], word: str) -> float:
    """log10 p(word | history) of an ARPA model by the backoff rule (history truncated to order-1)."""
    h = tuple(history)[-(lm.order - 1):] if lm.order > 1 else ()
    bow = 0.0
    while True:
        g = h + (word,)
        e = lm.ngrams.get(len(g), {}).get(g)
        if e is not None:
            return bow + e[0]
        if not h:
            return LOG10_ZERO
        hb = lm.ngrams.get(len(h), {}).get(h)
        if hb is not None and hb[1] is not None:
            bow += hb[1]
        h = h[1:]


def read_arpa(path: str | Path) -> ArpaLm:
    """An ARPA file (plain or .gz); errors name the file and line."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    ngrams: dict[int, dict] = {}
    n = 0
    with opener(path, "rt", encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            line = line.strip()
            if not line or line.startswith("ngram ") or line == "\\data\\":
                continue
            if line == "\\end\\":
                break
            if line.startswith("\\") and line.endswith("-grams:"):
                n = int(line[1:].split("-")[0])
                ngrams[n] = {}
                continue
            if n == 0:
                continue
            t = line.split()
            try:
                lp = float(t[0])
                words = tuple(t[1:1 + n])
                bow = float(t[1 + n]) if len(t) > 1 + n else None
            except (ValueError, IndexError):
                raise ValueError(f"{path}:{lineno}: bad {n}-gram line {line!r}") from None
            if len(words) != n:
                raise ValueError(f"{path}:{lineno}: {n}-gram line with {len(words)} words")
            ngrams[n][words] = (lp, bow)
    if not ngrams:
        raise ValueError(f"{path}: no n-grams (not an ARPA file)")
    return ArpaLm(ngrams)


def best_sentences(lm: ArpaLm, lengths: Iterable[int], beam: int = 10, top_unigrams: int = 30) -> dict[int, list[str]]:
    """The LM's most likely sentence of each length in ``lengths`` (``<s> w1..wn </s>``, ``<unk>``
    excluded), by beam search: each hypothesis is extended by the words with an explicit n-gram after
    a suffix of its history and by the ``top_unigrams`` most likely unigrams (the best backed-off
    words).  The no-acoustics baseline of word decoding with the reference's length (ser.chain.decode_wer)."""
    lengths = sorted(set(lengths))
    out: dict[int, list[str]] = {0: []} if 0 in lengths else {}
    if not lengths or lengths[-1] <= 0:
        return out
    followers: dict[tuple[str, ...], set[str]] = defaultdict(set)
    for n in range(2, lm.order + 1):
        for g in lm.ngrams[n]:
            followers[g[:-1]].add(g[-1])
    skip = {BOS, EOS, UNK}
    uni = sorted((w for w in lm.vocab() if w not in skip), key=lambda w: -lm.ngrams[1][(w,)][0])[:top_unigrams]
    hyps: list[tuple[float, tuple[str, ...]]] = [(0.0, (BOS,))]
    for n in range(1, lengths[-1] + 1):
        cand: dict[tuple[str, ...], float] = {}
        for lp, words in hyps:
            h = words[-(lm.order - 1):] if lm.order > 1 else ()
            succ = set(uni)
            for k in range(len(h)):
                succ |= followers.get(h[k:], set())
            for w in succ - skip:
                key = words + (w,)
                cand[key] = max(cand.get(key, -math.inf), lp + arpa_prob(lm, h, w))
        hyps = sorted(((v, k) for k, v in cand.items()), key=lambda x: -x[0])[:beam]
        if n in lengths:
            best = max(hyps, key=lambda x: x[0] + arpa_prob(lm, x[1][-(lm.order - 1):] if lm.order > 1 else (), EOS))
            out[n] = list(best[1][1:])
    return out
