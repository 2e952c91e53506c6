"""Flat-start LF-MMI ("chain"): lang and topology, phone LM, den/num graphs, the objective."""

from ser.chain.denominator import DenominatorFunction, DenominatorGraph, denominator_forward_backward
from ser.chain.graph import ChainGraph
from ser.chain.numerator import NumeratorFunction, NumeratorGraphBatch, numerator_forward_backward
from ser.chain.objective import ChainObjfFunction, ChainObjfInfo, LFMMILoss

__all__ = [
    "ChainGraph", "LFMMILoss", "ChainObjfInfo", "ChainObjfFunction", "DenominatorGraph", "NumeratorGraphBatch",
    "denominator_forward_backward", "numerator_forward_backward", "DenominatorFunction", "NumeratorFunction",
]
