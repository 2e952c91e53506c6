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
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

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

    @property
    def total_output_frames(self) -> int:
        return int(self.num_output_frames.sum())

    def to(self, device: torch.device | str) -> "ChainMinibatch":
        return ChainMinibatch(
            self.feats.to(device, non_blocking=True),
            None if self.ivector is None else self.ivector.to(device, non_blocking=True),
            self.num_graphs.to(device),
            self.num_output_frames.to(device),
            self.keys,
        )
