"""Edit-distance error rates as Kaldi's ``compute-wer`` prints them: the phone error rate of the chain
decoder (ser.chain.decode), the character and word error rates of the CTC model (ser.ctc.decode).

The errors of an utterance are the substitutions, insertions and deletions of one minimal-cost
(Levenshtein) alignment of the hypothesis to the reference (Kaldi ``LevenshteinEditDistance``,
src/util/edit-distance-inl.h); a set's rate is the errors summed over its utterances divided by the
number of reference units, in percent.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

__all__ = ["align_counts", "ErrorCounts"]


def align_counts(ref: Sequence, hyp: Sequence) -> tuple[int, int, int, int]:
    """(errors, insertions, deletions, substitutions) of a minimum edit-distance (Levenshtein)
    alignment; among alignments with equal errors, substitution/match is preferred, then
    deletion, then insertion."""
    n, m = len(ref), len(hyp)
    # cost[i][j] = (errors, ins, del, sub) for ref[:i] vs hyp[:j]
    prev = [(j, j, 0, 0) for j in range(m + 1)]
    for i in range(1, n + 1):
        cur = [(i, 0, i, 0)]
        for j in range(1, m + 1):
            e, ins, de, sub = prev[j - 1]
            if ref[i - 1] == hyp[j - 1]:
                diag = (e, ins, de, sub)
            else:
                diag = (e + 1, ins, de, sub + 1)
            e, ins, de, sub = prev[j]
            up = (e + 1, ins, de + 1, sub)
            e, ins, de, sub = cur[j - 1]
            left = (e + 1, ins + 1, de, sub)
            cur.append(min((diag, up, left), key=lambda x: x[0]))
        prev = cur
    return prev[m]


@dataclass
class ErrorCounts:
    """Errors of a set of utterances, accumulated one (reference, hypothesis) pair at a time;
    ``unit`` names the rate (PER, CER, WER)."""

    unit: str = "WER"
    errors: int = 0
    ins: int = 0
    dels: int = 0
    subs: int = 0
    ref_len: int = 0
    num_utts: int = 0

    def add(self, ref: Sequence, hyp: Sequence) -> tuple[int, int, int, int]:
        """Count one utterance; returns its (errors, insertions, deletions, substitutions)."""
        e, i, d, s = align_counts(ref, hyp)
        self.errors += e
        self.ins += i
        self.dels += d
        self.subs += s
        self.ref_len += len(ref)
        self.num_utts += 1
        return e, i, d, s

    @property
    def rate(self) -> float:
        """Percent; infinite only with no reference units."""
        return 100.0 * self.errors / self.ref_len if self.ref_len else float("inf")

    def line(self) -> str:
        """Kaldi compute-wer's line, e.g. ``%WER 40.00 [ 2 / 5, 1 ins, 0 del, 1 sub ]``."""
        return (f"%{self.unit} {self.rate:.2f} [ {self.errors} / {self.ref_len}, {self.ins} ins, "
                f"{self.dels} del, {self.subs} sub ]")

    def __str__(self) -> str:
        return f"{self.line()} over {self.num_utts} utterances"
