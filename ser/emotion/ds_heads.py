"""Paper 2's four heads on the DeepSpeech-style model's first-layer features (Andova et al., §4.3).

Inputs are per-utterance matrices [T, D] (``layer_1`` outputs, one row per 20 ms), standardised with the
mean and standard deviation of the training frames (paper 2 does not say; the features are clipped-ReLU
outputs in [0, 20] with very different scales per unit).  Labels are class indices.

* ``ds_dense``: dense 204 (ReLU) -> softmax per frame, trained with the utterance label on every frame.
  Paper 2 does not say how frames make an utterance decision; here the frame softmaxes are summed and
  normalised (the same rule as paper 1's stage 7, ``utt2post``) and the decision is their argmax.
* ``ds_lstm``: an LSTM of 20 units with ReLU activation (Keras' ``LSTM(20, activation="relu")``: ReLU for
  the cell input and the cell output, sigmoid gates) over the utterance; its last state -> dense softmax.
* ``ds_dense_dense``: the frame model of ``ds_dense`` trained on one half of the training speakers; on
  the other half its frame posteriors averaged over each segment of ``segment_frames`` frames (the last,
  shorter segment kept) feed a dense softmax trained with the utterance label on every segment; the
  utterance decision sums the segment softmaxes.  The averaged posteriors are standardised with their
  mean and standard deviation over the second half's segments (near-uniform posteriors of a weak frame
  model otherwise leave the dense nearly nothing to learn from in a few passes).
* ``ds_dense_lstm``: the frame model on one half; an LSTM(20) (ReLU) over the sequence of its
  segment-averaged posteriors, trained on the other half, -> dense softmax.

Training (every head and stage; the task of ser.train.loop, without checkpoints): Adam, cross entropy,
``epochs`` passes; after each pass the model is scored on the validation utterances (speakers of the training
sessions only) and the pass with the best unweighted accuracy is kept (ties: the earlier pass).  Paper 2 gives
no optimiser or schedule.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Callable, NamedTuple, Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ser.config import Paper2Config
from ser.eval.metrics import unweighted_accuracy
from ser.train.loop import Loop, Task

log = logging.getLogger(__name__)

HEADS = ("ds_dense", "ds_lstm", "ds_dense_dense", "ds_dense_lstm")
FRAME_HIDDEN = 204      # paper 2 §4.3: "a dense layer with 204 neurons"
LSTM_UNITS = 20         # paper 2 §4.3: "an LSTM layer with 20 units"


class ReluLSTM(nn.Module):
    """A one-layer LSTM whose cell input and output activation is ``activation`` (Keras' ``activation``;
    ReLU in paper 2) with sigmoid gates; PyTorch's gate order (i, f, g, o) and parameter names, so
    ``activation=torch.tanh`` is ``nn.LSTM``.  Returns the hidden state at each sequence's last frame."""

    def __init__(self, input_size: int, hidden_size: int, activation: Callable = torch.relu) -> None:
        super().__init__()
        self.hidden_size = hidden_size
        self.activation = activation
        self.weight_ih_l0 = nn.Parameter(torch.empty(4 * hidden_size, input_size))
        self.weight_hh_l0 = nn.Parameter(torch.empty(4 * hidden_size, hidden_size))
        self.bias_ih_l0 = nn.Parameter(torch.empty(4 * hidden_size))
        self.bias_hh_l0 = nn.Parameter(torch.empty(4 * hidden_size))
        bound = hidden_size ** -0.5  # nn.LSTM's initialisation
        for p in self.parameters():
            nn.init.uniform_(p, -bound, bound)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """x [B, T, D], lengths [B] (>= 1) -> last hidden state [B, H]."""
        b = x.shape[0]
        xw = F.linear(x, self.weight_ih_l0, self.bias_ih_l0 + self.bias_hh_l0)  # all frames at once
        h = x.new_zeros(b, self.hidden_size)
        c = x.new_zeros(b, self.hidden_size)
        w_hh = self.weight_hh_l0.T
        states = []
        for k in range(int(lengths.max())):
            i, f, g, o = (xw[:, k] + h @ w_hh).chunk(4, dim=1)
            c = torch.sigmoid(f) * c + torch.sigmoid(i) * self.activation(g)
            h = torch.sigmoid(o) * self.activation(c)
            states.append(h)
        return torch.stack(states, dim=1)[torch.arange(b), lengths - 1]


class FrameDense(nn.Module):
    """Dense 204 (ReLU) -> class logits, per frame."""

    def __init__(self, input_dim: int, num_classes: int) -> None:
        super().__init__()
        self.hidden = nn.Linear(input_dim, FRAME_HIDDEN)
        self.out = nn.Linear(FRAME_HIDDEN, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(torch.relu(self.hidden(x)))


class SequenceLstm(nn.Module):
    """LSTM(20, ReLU) over a sequence -> class logits of the sequence."""

    def __init__(self, input_dim: int, num_classes: int) -> None:
        super().__init__()
        self.lstm = ReluLSTM(input_dim, LSTM_UNITS)
        self.out = nn.Linear(LSTM_UNITS, num_classes)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return self.out(self.lstm(x, lengths))


_REC = Paper2Config()  # the recipe's defaults (ser.config): defined once


@dataclass(frozen=True)
class HeadOptions:
    epochs: int = _REC.head_epochs
    learning_rate: float = _REC.head_learning_rate
    segment_frames: int = _REC.segment_frames
    frame_batch: int = 256        # frames per minibatch of the frame models
    seq_batch: int = 16           # sequences per minibatch of the LSTMs (of similar length)
    segment_batch: int = 32       # segments per minibatch of ds_dense_dense's second dense
    seed: int = _REC.seed


def pad(seqs: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """[B, T_max, D] zero padded, lengths [B]."""
    lengths = torch.tensor([len(s) for s in seqs])
    return nn.utils.rnn.pad_sequence(list(seqs), batch_first=True), lengths


def segment_means(post: torch.Tensor, segment_frames: int) -> torch.Tensor:
    """Rows of ``post`` [T, K] averaged over consecutive segments of ``segment_frames`` (the last segment
    may be shorter) -> [ceil(T / segment_frames), K]."""
    return torch.stack([s.mean(dim=0) for s in post.split(segment_frames)])


def utterance_posterior(frame_logits: torch.Tensor) -> torch.Tensor:
    """Summed frame softmaxes, normalised to sum 1: the utterance decision of a frame model."""
    p = frame_logits.softmax(dim=-1).sum(dim=0)
    return p / p.sum()


@dataclass
class Utterances:
    """Feature matrices [T_i, D] and class indices of a set of utterances."""
    x: list[torch.Tensor]
    y: torch.Tensor

    def subset(self, idx: Sequence[int]) -> "Utterances":
        return Utterances([self.x[i] for i in idx], self.y[list(idx)])


Predictor = Callable[[list[torch.Tensor]], torch.Tensor]   # utterance matrices -> posteriors [N, K]


class Batcher(NamedTuple):
    """Minibatches of a pass (``make(data, gen)``) and how many a pass of ``data`` has (``count(data)``)."""
    make: Callable
    count: Callable[[Utterances], int]


def _frame_batches(data: Utterances, batch: int, gen: torch.Generator):
    x = torch.cat(data.x)
    y = torch.cat([torch.full((len(u),), int(c)) for u, c in zip(data.x, data.y)])
    for idx in torch.randperm(len(y), generator=gen).split(batch):
        yield x[idx], y[idx]


def _seq_batches(data: Utterances, batch: int, gen: torch.Generator):
    """Minibatches of sequences of similar length (sorted, then cut; the order of the minibatches drawn
    each pass): the recurrence runs for the longest sequence of each, so this halves its steps."""
    by_length = sorted(range(len(data.y)), key=lambda i: len(data.x[i]))
    chunks = [by_length[i:i + batch] for i in range(0, len(by_length), batch)]
    for c in torch.randperm(len(chunks), generator=gen).tolist():
        x, lengths = pad([data.x[i] for i in chunks[c]])
        yield (x, lengths), data.y[chunks[c]]


def frame_batcher(batch: int) -> Batcher:
    return Batcher(lambda d, g: _frame_batches(d, batch, g), lambda d: -(-sum(len(x) for x in d.x) // batch))


def seq_batcher(batch: int) -> Batcher:
    return Batcher(lambda d, g: _seq_batches(d, batch, g), lambda d: -(-len(d.y) // batch))


class _HeadTask(Task):
    """One head (or stage) as the task of ser.train.loop: Adam on cross entropy, a pass per epoch, the pass with
    the best validation UA selected (ties: the earlier pass).  No files: the heads train in seconds."""

    def __init__(self, model: nn.Module, batcher: Batcher, predict: Callable[[nn.Module], Predictor],
                 train: Utterances, valid: Utterances, opts: HeadOptions, gen: torch.Generator, what: str) -> None:
        self.model = self.net = model
        self.optimizer = torch.optim.Adam(model.parameters(), lr=opts.learning_rate)
        self.batcher, self.predict, self.train, self.valid = batcher, predict, train, valid
        self.gen, self.what = gen, what

    def num_batches(self) -> int:
        return self.batcher.count(self.train)

    def batches(self, epoch: int, start: int):
        return self.batcher.make(self.train, self.gen)  # draws the pass's order from the shared generator

    def step(self, mb, loop: Loop) -> dict[str, float]:
        x, y = mb
        self.model.train()
        logits = self.model(*x) if isinstance(x, tuple) else self.model(x)
        loss = F.cross_entropy(logits, y)
        if not torch.isfinite(loss):
            raise RuntimeError(f"{self.what}: non-finite training loss in pass {loop.state.epoch + 1}")
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        return {"loss": float(loss.detach()) * len(y), "n": float(len(y))}

    def point(self, sums: dict[str, float], loop: Loop) -> dict[str, Any]:
        self.model.eval()
        with torch.no_grad():
            ua = unweighted_accuracy(self.valid.y.numpy(), self.predict(self.model)(self.valid.x).argmax(1).numpy())
        log.debug("%s: pass %d: training loss %.4f, validation UA %.4f", self.what, loop.state.epoch,
                  sums["loss"] / sums["n"], ua)
        return {"pass": loop.state.epoch, "valid_ua": ua}

    def score(self, entry: dict[str, Any]) -> tuple[float]:
        return (entry["valid_ua"],)



def _fit(model: nn.Module, batcher: Batcher, predict: Callable[[nn.Module], Predictor], train: Utterances,
         valid: Utterances, opts: HeadOptions, gen: torch.Generator, what: str) -> nn.Module:
    """Adam on cross entropy for ``opts.epochs`` passes; the pass with the best validation UA is kept."""
    task = _HeadTask(model, batcher, predict, train, valid, opts, gen, what)
    loop = Loop(task, None, opts.epochs * task.num_batches(), torch.device("cpu"), what=what)
    loop.resume_or_start()
    loop.run()
    best = loop.selected()  # loads the selected pass's model
    log.info("%s: best validation UA %.4f", what, best["valid_ua"])
    return model.eval()


def _frame_predictor(model: nn.Module) -> Predictor:
    def predict(xs: list[torch.Tensor]) -> torch.Tensor:
        with torch.no_grad():
            return torch.stack([utterance_posterior(model(x)) for x in xs])
    return predict


def _seq_predictor(model: nn.Module, batch: int = 64) -> Predictor:
    def predict(xs: list[torch.Tensor]) -> torch.Tensor:
        order = sorted(range(len(xs)), key=lambda i: len(xs[i]))   # similar lengths together, as in training
        post = torch.empty(len(xs), model.out.out_features)
        with torch.no_grad():
            for i in range(0, len(xs), batch):
                idx = order[i:i + batch]
                post[idx] = model(*pad([xs[j] for j in idx])).softmax(-1)
        return post
    return predict


def _then(first: nn.Module, segment_frames: int) -> Callable[[list[torch.Tensor]], list[torch.Tensor]]:
    """Utterance matrices -> their segment-averaged frame posteriors under the frame model ``first``."""
    def transform(xs: list[torch.Tensor]) -> list[torch.Tensor]:
        with torch.no_grad():
            return [segment_means(first(x).softmax(-1), segment_frames) for x in xs]
    return transform


def split_halves(speakers: Sequence[str], seed: int) -> tuple[list[int], list[int]]:
    """Indices of the utterances of one half of the speakers and of the other (a seeded draw of
    ceil(n / 2) speakers): the two parts of a two-half head never share an utterance or a speaker."""
    spk = sorted(set(speakers))
    if len(spk) < 2:
        raise ValueError(f"a two-half head needs at least 2 training speakers, got {spk}")
    order = np.random.default_rng(seed).permutation(len(spk))
    first = {spk[i] for i in order[:(len(spk) + 1) // 2]}
    return ([i for i, s in enumerate(speakers) if s in first],
            [i for i, s in enumerate(speakers) if s not in first])


@dataclass
class TrainedHead:
    predict: Predictor                 # utterance matrices (unnormalised) -> posteriors [N, K]
    parts: dict[str, list[int]]        # training utterances (indices) each stage was trained on


def _standardiser(train: Utterances) -> Callable[[list[torch.Tensor]], list[torch.Tensor]]:
    frames = torch.cat(list(train.x))  # x may be a sequence read from disk (ser.io.batching.TableRows)
    mean, std = frames.mean(dim=0), frames.std(dim=0)
    std = torch.where(std > 0, std, torch.ones_like(std))
    return lambda xs: [(x - mean) / std for x in xs]


def train_head(head: str, train: Utterances, train_speakers: Sequence[str], valid: Utterances,
               num_classes: int, opts: HeadOptions = HeadOptions()) -> TrainedHead:
    """Train one of :data:`HEADS` (see the module docstring); validation selects each stage's pass."""
    if head not in HEADS:
        raise ValueError(f"unknown head {head!r}; heads are {', '.join(HEADS)}")
    if len(train_speakers) != len(train.y):
        raise ValueError(f"{len(train.y)} training utterances but {len(train_speakers)} speakers")
    norm = _standardiser(train)
    train, valid = Utterances(norm(train.x), train.y), Utterances(norm(valid.x), valid.y)
    gen = torch.Generator().manual_seed(opts.seed)
    torch.manual_seed(opts.seed)  # the heads' initial weights
    dim, k = train.x[0].shape[1], num_classes
    frames, seqs = frame_batcher(opts.frame_batch), seq_batcher(opts.seq_batch)
    everything = list(range(len(train.y)))
    if head == "ds_dense":
        m = _fit(FrameDense(dim, k), frames, _frame_predictor, train, valid, opts, gen, head)
        return TrainedHead(lambda xs: _frame_predictor(m)(norm(xs)), {"frame": everything})
    if head == "ds_lstm":
        m = _fit(SequenceLstm(dim, k), seqs, _seq_predictor, train, valid, opts, gen, head)
        return TrainedHead(lambda xs: _seq_predictor(m)(norm(xs)), {"sequence": everything})
    a, b = split_halves(train_speakers, opts.seed)
    first = _fit(FrameDense(dim, k), frames, _frame_predictor, train.subset(a), valid, opts, gen,
                 f"{head} frame model")
    posteriors = _then(first, opts.segment_frames)
    norm2 = _standardiser(Utterances(posteriors(train.subset(b).x), train.y[b]))
    seg = lambda xs: norm2(posteriors(xs))  # noqa: E731
    second_train = Utterances(seg(train.subset(b).x), train.y[b])
    second_valid = Utterances(seg(valid.x), valid.y)
    if head == "ds_dense_dense":
        m2 = _fit(nn.Linear(k, k), frame_batcher(opts.segment_batch), _frame_predictor, second_train, second_valid,
                  opts, gen, f"{head} segment dense")
        inner = _frame_predictor(m2)
    else:
        m2 = _fit(SequenceLstm(k, k), seqs, _seq_predictor, second_train, second_valid, opts, gen,
                  f"{head} segment LSTM")
        inner = _seq_predictor(m2)
    return TrainedHead(lambda xs: inner(seg(norm(xs))), {"frame": a, "second": b})
