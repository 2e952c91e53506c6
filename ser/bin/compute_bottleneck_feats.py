"""One job of steps/ctc/make_bottleneck_features.sh: the output of one named layer of a trained model for
every utterance of a data dir (part), as a Kaldi binary ark + scp + utt2num_frames.

    python -m ser.bin.compute_bottleneck_feats --layer layer_1 [--device cpu] <model> <data-part> <out-prefix>

Kaldi's ``steps/nnet3/make_bottleneck_features.sh`` runs ``nnet3-compute`` with the network cut at the
bottleneck node; here the model computes only the layers up to ``--layer`` (``embed(upto=...)``).  Each
utterance is computed whole (batched by length; padded frames never reach an utterance's numbers), in
eval mode (no dropout).  The input is the model's own features (``feats.scp``: 26 MFCC of
conf/mfcc_deepspeech.conf for the DeepSpeech model).  Paper 2's features are ``layer_1``: 2048 numbers per
20 ms frame at paper size.
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

import numpy as np
import torch

from ser.cli import add_device_argument, run_main, setup_logging
from ser.io.atomic import atomic_open
from ser.io.datadir import DataDir
from ser.io.tables import ArkScpWriter
from ser.nnet.model_io import load_deepspeech_model
from ser.progress import progress
from ser.train.ctc_data import length_buckets, pad_batch
from ser.io.batching import LazyMatrixTable, Table
from ser.io.prefetch import prefetch

log = logging.getLogger("compute_bottleneck_feats")


@torch.no_grad()
def layer_outputs(model, feats: Table, layer: str, device: torch.device, max_frames: int = 20000):
    """Yield (utterance, [T, dim] float32 numpy), utterances of similar length batched up to ``max_frames``
    padded frames (shortest first); each batch's features read (a lazy table) and padded on a prefetch
    thread while the previous one is computed."""
    model.eval()

    def batches():
        for group in length_buckets([feats.num_rows(k) for k in feats.keys], max_frames):
            keys = [feats.keys[i] for i in group]
            yield keys, *pad_batch([feats[k] for k in keys])
    for keys, x, lengths in prefetch(batches(), 2):
        out = model.embed(x.to(device), upto=layer, lengths=lengths.to(device)).float().cpu().numpy()
        for n, k in enumerate(keys):
            yield k, out[n, :int(lengths[n])]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--layer", default="layer_1", help="layer whose output is written (the model's layer names)")
    p.add_argument("--num-threads", type=int, default=1, help="torch threads (one per job, as Kaldi's jobs)")
    add_device_argument(p, default="cpu")
    p.add_argument("model", help="final.pt of train_ctc")
    p.add_argument("data", help="data dir (part) with the model's input features in feats.scp")
    p.add_argument("out_prefix")
    a = p.parse_args(argv)
    setup_logging()
    torch.set_num_threads(a.num_threads)
    model = load_deepspeech_model(a.model).to(a.device)
    dim = model.layer_dim(a.layer)  # unknown layer names fail here, before any work
    d = DataDir.load(a.data)
    d.validate(need_feats=True)
    feats = LazyMatrixTable.from_scp(Path(a.data) / "feats.scp", d.utts)  # read per batch, not held
    if feats.dim != model.config.feat_dim:
        raise ValueError(f"{a.data}/feats.scp: {feats.dim}-dim features, the model takes {model.config.feat_dim}")
    t0, frames = time.time(), {}
    with ArkScpWriter(f"{a.out_prefix}.ark", f"{a.out_prefix}.scp") as w:
        for utt, m in progress(layer_outputs(model, feats, a.layer, a.device), total=len(d.utts),
                           desc=Path(a.data).name, mininterval=10):
            if not np.isfinite(m).all():
                raise ValueError(f"{a.data}: utterance {utt}: non-finite {a.layer} output")
            w.write(utt, m)
            frames[utt] = m.shape[0]
    with atomic_open(f"{a.out_prefix}.utt2num_frames") as f:
        f.writelines(f"{u} {n}\n" for u, n in sorted(frames.items()))
    print(f"compute_bottleneck_feats: {len(frames)} utterances, {sum(frames.values())} frames of {a.layer} "
          f"({dim} dims) in {time.time() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    run_main(main)
