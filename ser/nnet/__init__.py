"""Neural networks: the tdnn_1g TDNN-F chain model and its Kaldi-specific pieces."""

from ser.nnet.dropout import DropoutSchedule, GeneralDropout
from ser.nnet.orthonormal import (apply_orthonormal_constraint, constrain_orthonormal,
                                  constrain_orthonormal_internal)
from ser.nnet.preconditioning import (FixedAffineSplice, LdaStats, estimate_preconditioning,
                                      splice_input)
from ser.io.batching import pad_edges  # re-exported: edge padding is the batching layer's
from ser.nnet.tdnnf import KaldiBatchNorm, TdnnComponent, TdnnfConfig, TdnnfLayer, TdnnfModel

__all__ = [
    "DropoutSchedule", "GeneralDropout", "apply_orthonormal_constraint", "constrain_orthonormal",
    "constrain_orthonormal_internal", "FixedAffineSplice", "LdaStats", "estimate_preconditioning",
    "splice_input", "KaldiBatchNorm", "TdnnComponent", "TdnnfConfig", "TdnnfLayer", "TdnnfModel",
    "pad_edges",
]
