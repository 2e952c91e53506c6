"""How a set's classes are shown in tables, figures and exports.

Paper 1's set ``iemocap_4cls_exc`` (ser.prep.iemocap) keeps IEMOCAP's EXCITED turns and names the class
``hap``, as paper 1 does ("exc renamed hap"); IEMOCAP's happiness turns are not in it.  The data, the
decisions and ``labels.txt`` keep the short label ``hap`` (a machine label every stage and an export's
``ser-infer`` output share); wherever a person reads the class it is shown as ``hap(exc)``.  Paper 2's
``hap`` (``iemocap_agree``, ``iemocap_impro_agree``) is happiness and is shown as it is.
"""

from __future__ import annotations

# set -> {label in the data: how it is shown}
SHOWN_AS = {"iemocap_4cls_exc": {"hap": "hap(exc)"},       # excited only (paper 1)
            "iemocap_4cls_hapexc": {"hap": "hap(hap+exc)"}}  # happiness and excited merged


def shown_labels(set_name: str | None, labels: list[str]) -> list[str]:
    """``labels`` as shown for ``set_name`` (unchanged for a set without renamed classes)."""
    renamed = SHOWN_AS.get(set_name or "", {})
    return [renamed.get(lab, lab) for lab in labels]


def label_note(set_name: str | None) -> str:
    """One sentence on the renamed classes of ``set_name``, or "" when none are."""
    if set_name == "iemocap_4cls_exc":
        return ("Class hap(exc): IEMOCAP's excited turns, which paper 1 renames hap (its data label); "
                "IEMOCAP's happiness turns are not in this set.")
    if set_name == "iemocap_4cls_hapexc":
        return "Class hap(hap+exc): IEMOCAP's happiness and excited turns merged (data label hap)."
    return ""
