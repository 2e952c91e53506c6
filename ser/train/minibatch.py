"""The minibatch handed from the egs loaders (ser.train.egs) to the chain trainer.

Mirrors what one ``NnetChainExample`` minibatch holds in Kaldi (src/nnet3/nnet-chain-example.h):
input frames with the model's left/right context, one i-vector per sequence
(``ReplaceIndex(ivector, t, 0)``), and the numerator supervision of each sequence.

Frame convention (ser.nnet.TdnnfModel): for ``T_out`` output frames at frame-subsampling
factor 3 a sequence carries ``T_in = 3 * T_out + left_context + right_context`` input frames
(28 + 28 for tdnn_1g); output frame k sits at input time ``3k`` relative to the first
non-context frame.  Sequences of one minibatch may have different ``num_output_frames``
(whole-utterance flat-start batches): their inputs are padded by repeating the last frame
and the objective ignores output frames ``>= num_output_frames[b]``.

:func:`subset_minibatch` takes some of its sequences (a DDP rank's share, Kaldi's halved
minibatch of iteration 0: :func:`split_minibatch`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from ser.chain.graph import ChainGraph
from ser.chain.numerator import NumeratorGraphBatch


@dataclass
class ChainMinibatch:
    feats: torch.Tensor  # float32 [B, T_in_max, feat_dim]
    ivector: torch.Tensor | None  # float32 [B, ivector_dim] (one per sequence) or None
    num_graphs: NumeratorGraphBatch  # B numerator graphs (normalised with the den graph)
    num_output_frames: torch.Tensor  # int64 [B]
    keys: list[str]  # utterance (or chunk) ids, for logs and error messages

    @property
    def batch_size(self) -> int:
        return int(self.feats.shape[0])

    def to(self, device: torch.device | str) -> "ChainMinibatch":
        return ChainMinibatch(
            self.feats.to(device, non_blocking=True),
            None if self.ivector is None else self.ivector.to(device, non_blocking=True),
            self.num_graphs.to(device),
            self.num_output_frames.to(device),
            self.keys,
        )


def subset_minibatch(mb: ChainMinibatch, index: Sequence[int]) -> ChainMinibatch:
    """The sequences ``index`` of a minibatch (numerator graphs re-numbered)."""
    idx = torch.as_tensor(list(index), dtype=torch.long)
    if idx.numel() == 0:
        raise ValueError("subset_minibatch: empty index")
    nb = mb.num_graphs
    g = nb.graph
    dev = nb.seq_of_state.device
    new_seq = torch.full((nb.num_sequences,), -1, dtype=torch.long, device=dev)
    new_seq[idx.to(dev)] = torch.arange(idx.numel(), device=dev)
    keep_state = new_seq[nb.seq_of_state] >= 0
    keep_arc = new_seq[nb.seq_of_arc] >= 0
    # states keep their relative order, so each graph's states stay contiguous and ordered
    # by sequence index only if idx is increasing; reorder states by new sequence id
    old_states = torch.nonzero(keep_state).squeeze(1)
    order = torch.argsort(new_seq[nb.seq_of_state[old_states]], stable=True)
    old_states = old_states[order]
    state_map = torch.full((g.num_states,), -1, dtype=torch.long, device=dev)
    state_map[old_states] = torch.arange(old_states.numel(), device=dev)
    arcs = torch.nonzero(keep_arc).squeeze(1)
    arcs = arcs[torch.argsort(new_seq[nb.seq_of_arc[arcs]], stable=True)]
    graph = ChainGraph(int(old_states.numel()), state_map[g.src[arcs]], state_map[g.dst[arcs]],
                       g.pdf[arcs], g.logp[arcs], g.initial[old_states], g.final[old_states])
    num = NumeratorGraphBatch(graph, new_seq[nb.seq_of_state[old_states]],
                              new_seq[nb.seq_of_arc[arcs]], int(idx.numel()))
    fi = idx.to(mb.feats.device)
    return ChainMinibatch(mb.feats[fi], None if mb.ivector is None else mb.ivector[fi], num,
                          mb.num_output_frames[idx.to(mb.num_output_frames.device)],
                          [mb.keys[i] for i in idx.tolist()])


def split_minibatch(mb: ChainMinibatch) -> list[ChainMinibatch]:
    """Two halves (Kaldi's halved minibatch on iteration 0); a single sequence stays whole."""
    b = mb.batch_size
    if b < 2:
        return [mb]
    h = (b + 1) // 2
    return [subset_minibatch(mb, range(h)), subset_minibatch(mb, range(h, b))]
