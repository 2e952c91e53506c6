"""Denominator graph of LF-MMI: phone LM x left-biphone context x chain HMM -> pdf acceptor.

Mirrors src/chain/chain-den-graph.cc (CreateDenominatorFst, DenGraphMinimizeWrapper,
MinimizeAcceptorNoPush, SortOnTransitionCount, DenominatorGraph::SetInitialProbs,
GetNormalizationFst) and src/chainbin/chain-make-den-fst.cc:

1. the phone LM is expanded with the left-biphone context and the H transducer with
   self-loops (transition-scale 1, self-loop-scale 1, reorder) straight into a pdf
   acceptor (labels pdf-id + 1), see :func:`ser.chain.topo.expand_to_pdfs`; a left
   biphone needs no subsequential symbol, and the expansion creates no epsilons;
2. epsilons (if any) removed;
3. 3 x (reverse, PushSpecial, MinimizeEncoded(delta = 10 kDelta), reverse, PushSpecial,
   MinimizeEncoded), then RmEpsilon and a final PushSpecial.  Reverse, MinimizeEncoded
   and RmEpsilon come from kaldifst (the OpenFst / Kaldi fstext code Kaldi itself runs);
   kaldifst has no weight pushing, so PushSpecial is :func:`ser.chain.fsa.push_special`
   (same power method and stopping rule);
4. states sorted by decreasing (in + out) arc count;
5. initial probabilities: 100 iterations of the HMM started at the start state, each
   state's arcs normalised by 1 / (final + sum of arcs), renormalised each iteration,
   averaged.

The arc probabilities are used as they are (DenominatorGraph::SetTransitions); every
state counts as final with probability 1 in training.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from ser.chain.fsa import Fsa, push_special
from ser.chain.graph import ChainGraph
from ser.chain.topo import LOG_HALF, PdfMap, expand_to_pdfs
from ser.io.atomic import atomic_write_text
from ser.io.torch_io import save_torch

log = logging.getLogger(__name__)

K_DELTA = 1.0 / 1024.0


def minimize_acceptor_no_push(fsa: Fsa) -> Fsa:
    import kaldifst

    f = fsa.to_kaldifst()
    kaldifst.minimize_encoded(f, delta=K_DELTA * 10.0)
    return Fsa.from_kaldifst(f)


def reverse(fsa: Fsa) -> Fsa:
    import kaldifst

    return Fsa.from_kaldifst(kaldifst.reverse(fsa.to_kaldifst()))


def rm_epsilon_tropical(fsa: Fsa) -> Fsa:
    """fst::RmEpsilon on the StdArc (tropical) FST, as Kaldi calls it."""
    import kaldifst

    if not (fsa.label == 0).any():
        return fsa
    f = fsa.to_kaldifst()
    kaldifst.rmepsilon(f)
    return Fsa.from_kaldifst(f)


def den_graph_minimize(fsa: Fsa) -> Fsa:
    push_delta = K_DELTA * 0.01
    for i in range(1, 4):
        rev = push_special(reverse(fsa), push_delta)
        rev = minimize_acceptor_no_push(rev)
        fsa = reverse(rev)
        log.info("Number of states and arcs in pdf FST after reversed minimization is %d and %d (pass %d)",
                 fsa.num_states, fsa.num_arcs, i)
        fsa = minimize_acceptor_no_push(push_special(fsa, push_delta))
        log.info("Number of states and arcs in pdf FST after regular minimization is %d and %d (pass %d)",
                 fsa.num_states, fsa.num_arcs, i)
    fsa = rm_epsilon_tropical(fsa)
    log.info("Number of states and arcs after removing any epsilons introduced by reversal is %d and %d",
             fsa.num_states, fsa.num_arcs)
    return push_special(fsa, push_delta)


def sort_on_transition_count(fsa: Fsa) -> Fsa:
    n = np.bincount(fsa.src, minlength=fsa.num_states) + np.bincount(fsa.dst, minlength=fsa.num_states)
    order = np.lexsort((np.arange(fsa.num_states), -n))  # decreasing count, ties by state id
    return fsa.renumber(np.ones(fsa.num_states, bool), order).sorted_arcs()


def initial_probs(fsa: Fsa, num_iters: int = 100) -> np.ndarray:
    """DenominatorGraph::SetInitialProbs."""
    import scipy.sparse as sp

    S = fsa.num_states
    p = np.exp(fsa.logp)
    tot = np.exp(fsa.final) + np.bincount(fsa.src, weights=p, minlength=S)
    if not np.all((tot > 0) & (tot < 100)):
        raise RuntimeError("den graph: a state's total probability is outside (0, 100)")
    M = sp.csr_matrix((p / tot[fsa.src], (fsa.dst, fsa.src)), shape=(S, S))  # next = M @ cur
    cur = np.zeros(S)
    cur[fsa.start] = 1.0
    avg = np.zeros(S)
    for _ in range(num_iters):
        avg += cur / num_iters
        cur = M @ cur
        cur /= cur.sum()
    return avg


def create_den_fsa(phone_lm: Fsa, pdf_map: PdfMap, minimize: bool = True) -> Fsa:
    log.info("Number of states and arcs in phone-LM FST is %d and %d", phone_lm.num_states, phone_lm.num_arcs)
    fsa = expand_to_pdfs(phone_lm, pdf_map, LOG_HALF, LOG_HALF)
    log.info("Number of states and arcs in pdf FST is %d and %d", fsa.num_states, fsa.num_arcs)
    fsa = fsa.connect()
    fsa = rm_epsilon_tropical(fsa)
    if minimize:
        fsa = den_graph_minimize(fsa)
    fsa = sort_on_transition_count(fsa)
    seen = np.zeros(pdf_map.num_pdfs, bool)
    seen[fsa.label - 1] = True
    if not seen.all():
        log.warning("%d of %d pdf-ids are not seen in the denominator graph", int((~seen).sum()), pdf_map.num_pdfs)
    nin = np.bincount(fsa.dst, minlength=fsa.num_states)
    nout = np.bincount(fsa.src, minlength=fsa.num_states)
    log.info("Number of states is %d and arcs %d; number of states with in-degree <= 3 is %d and with "
             "out-degree <= 3 is %d", fsa.num_states, fsa.num_arcs, int((nin <= 3).sum()), int((nout <= 3).sum()))
    return fsa


class DenGraph:
    """The den FST (pdf-id+1 labels, log probs, with its final weights) plus initial probs."""

    def __init__(self, fsa: Fsa, num_pdfs: int, init: np.ndarray | None = None) -> None:
        self.fsa = fsa
        self.num_pdfs = int(num_pdfs)
        self.init = initial_probs(fsa) if init is None else np.asarray(init, dtype=np.float64)

    @property
    def num_states(self) -> int:
        return self.fsa.num_states

    @property
    def num_arcs(self) -> int:
        return self.fsa.num_arcs

    def chain_graph(self) -> ChainGraph:
        """Training form: arcs as they are, log initial probs, every state final (log 1)."""
        f = self.fsa
        with np.errstate(divide="ignore"):
            init = np.log(self.init)
        return ChainGraph(f.num_states, torch.from_numpy(f.src.copy()), torch.from_numpy(f.dst.copy()),
                          torch.from_numpy(f.label - 1), torch.from_numpy(f.logp.astype(np.float32)),
                          torch.from_numpy(init.astype(np.float32)), torch.zeros(f.num_states))

    def save(self, out_dir: str | Path) -> None:
        """den.pt (ChainGraph.state_dict + num_pdfs, den FST final weights) and den.fst.txt."""
        out = Path(out_dir)
        sd = self.chain_graph().state_dict()
        sd["num_pdfs"] = self.num_pdfs
        sd["fst_final"] = torch.from_numpy(self.fsa.final.astype(np.float32))
        sd["fst_start"] = int(self.fsa.start)
        sd["init_probs"] = torch.from_numpy(self.init)
        save_torch(sd, out / "den.pt")
        atomic_write_text(out / "den.fst.txt", self.fsa.to_openfst_text())

    @classmethod
    def from_state_dict(cls, d: dict) -> "DenGraph":
        """From den.pt's dict (read it with ser.chain.chain_dir.ChainDir)."""
        fsa = Fsa(int(d["num_states"]), int(d["fst_start"]), d["src"].numpy(), d["dst"].numpy(),
                  d["pdf"].numpy() + 1, d["logp"].double().numpy(), d["fst_final"].double().numpy())
        return cls(fsa, int(d["num_pdfs"]), d["init_probs"].numpy())
