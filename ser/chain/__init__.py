"""Flat-start LF-MMI ("chain"): lang and topology, phone LM, den/num graphs, the objective.

No re-exports: ``ser.chain.lang`` and the other graph-building steps start without importing torch.
"""
