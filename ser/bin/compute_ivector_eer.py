"""Speaker-verification EER of utterance i-vectors (cosine scoring, all same/different-speaker pairs).

Usage:
  local/ivector_eer.sh --extractor-dir exp/nnet3/extractor data/iemocap          # extract offline-per-utterance
  local/ivector_eer.sh --data data/iemocap exp/nnet3/ivectors_iemocap             # use existing online rows
  local/ivector_eer.sh --extractor-dir exp/nnet3/extractor --lda-data data/tedlium_train_sp data/iemocap_all
                                    # + cosine after a speaker LDA trained on other speakers (Kaldi's usual back-end)

Utterance i-vector = the last online row (it has seen the whole utterance up to its last 10-frame point).
With a data dir, each utterance is extracted as its own speaker (no carry-over), so no speaker
information leaks between trials; rows from an existing ivector dir were usually extracted with speaker
carry-over, which makes the EER optimistic (a warning is printed).  Vectors are mean-centred and
length-normalised before cosine scoring.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from ser.cli import add_device_argument, run_main
from ser.eval.speaker import cosine_eer, speaker_lda
from ser.io.datadir import DataDir
from ser.io.tables import load_scp_matrices
from ser.ivector.online import utterance_ivectors


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dirs", nargs="*", help="ivector dirs (with ivector_online.scp) or data dirs (with feats.scp)")
    ap.add_argument("--data", help="data dir giving utt2spk for ivector dirs")
    ap.add_argument("--extractor-dir", help="extractor dir, to extract i-vectors for data dirs")
    add_device_argument(ap)
    ap.add_argument("--lda-data", help="data dir of OTHER speakers (e.g. the ASR training set) to train a speaker "
                    "LDA applied before cosine scoring; classes = recordings when it has segments, else speakers")
    ap.add_argument("--lda-dim", type=int, default=50)
    a = ap.parse_args(argv)
    if not a.dirs:
        ap.error("give ivector dirs or data dirs")
    lda = None
    if a.lda_data:
        if not a.extractor_dir:
            ap.error("--lda-data needs --extractor-dir")
        tv = utterance_ivectors(a.lda_data, a.extractor_dir, a.device)
        ld = DataDir.load(a.lda_data)
        cls = {u: (ld.segments[u].reco if ld.segments is not None else ld.utt2spk[u]) for u in ld.utts}
        keys = sorted(tv)
        lda = speaker_lda(np.stack([tv[u] for u in keys]).astype(np.float64), np.array([cls[u] for u in keys]),
                            a.lda_dim)
        print(f"speaker LDA from {a.lda_data}: {len(keys)} utterances, {len(set(cls.values()))} classes, "
              f"{lda[1].shape[1]} dims")
    for d in a.dirs:
        p = Path(d)
        if (p / "ivector_online.scp").is_file():
            if not a.data:
                ap.error(f"{d}: --data <data dir> is needed for utt2spk")
            print(f"warning: {d}: rows extracted with speaker carry-over make this EER optimistic", file=sys.stderr)
            vecs = {u: m[-1] for u, m in load_scp_matrices(p / "ivector_online.scp").items()}
            u2s = DataDir.load(a.data).utt2spk
        elif (p / "feats.scp").is_file():
            if not a.extractor_dir:
                ap.error(f"{d}: --extractor-dir is needed to extract i-vectors from a data dir")
            vecs = utterance_ivectors(d, a.extractor_dir, a.device)
            u2s = DataDir.load(p).utt2spk
        else:
            ap.error(f"{d}: neither an ivector dir (ivector_online.scp) nor a data dir (feats.scp)")
        e, nt, nn = cosine_eer(vecs, u2s)
        print(f"{d}: EER {100 * e:.2f}% over {nt} target / {nn} non-target trials (cosine)")
        if lda is not None:
            e, nt, nn = cosine_eer(vecs, u2s, lda)
            print(f"{d}: EER {100 * e:.2f}% over {nt} target / {nn} non-target trials (LDA + cosine)")
    return 0


if __name__ == "__main__":
    run_main(main)
