"""steps/ctc/decode.sh: greedy CTC decoding of a data dir and its character / word error rates.

    python -m ser.bin.decode_ctc [--device auto] <model> <data> <decode-dir>

``<data>`` has ``feats.scp`` (the model's MFCC) and ``text``; the transcripts are normalised to the
model's alphabet as in training (dropped tokens / characters logged).  Writes, atomically,
``<decode-dir>/hyp.txt`` (utterance, decoded text), ``ref.txt`` (normalised references), ``cer.txt`` and
``wer.txt`` (Kaldi compute-wer lines), ``all_blank.txt`` (the same scores for a network that outputs
blank on every frame, decoded and scored by the same code: 100% CER and WER, every unit deleted) and
``results.txt`` (the four lines).
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import torch

from ser.cli import add_device_argument, run_main, setup_logging
from ser.ctc.decode import error_rate, greedy_decode
from ser.ctc.text import decode_ids
from ser.io.atomic import atomic_write_text
from ser.nnet.model_io import load_deepspeech_model
from ser.train.ctc_data import CtcBatches, load_ctc_data

log = logging.getLogger("decode_ctc")


@torch.no_grad()
def decode_dir(model, data, device: torch.device, max_frames: int = 20000) -> tuple[dict[str, str], dict[str, str]]:
    """(hypotheses of the model, hypotheses of an all-blank output) by utterance."""
    model.eval()
    hyps, blank_hyps = {}, {}
    for mb in CtcBatches(data, max_frames).iterate():
        mb = mb.to(device)
        logits = model(mb.feats, lengths=mb.lengths)["output"]
        blank = torch.zeros_like(logits)
        blank[..., model.blank] = 1.0
        for k, ids, b in zip(mb.keys, greedy_decode(logits, mb.lengths, model.blank),
                             greedy_decode(blank, mb.lengths, model.blank)):
            hyps[k], blank_hyps[k] = decode_ids(ids), decode_ids(b)
    return hyps, blank_hyps


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_device_argument(p)
    p.add_argument("model", help="final.pt of train_ctc")
    p.add_argument("data")
    p.add_argument("decode_dir")
    a = p.parse_args(argv)
    setup_logging()
    model = load_deepspeech_model(a.model).to(a.device)
    data = load_ctc_data(a.data, skip_too_short=False)
    hyps, blank_hyps = decode_dir(model, data, a.device)
    out = Path(a.decode_dir)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "hyp.txt", "".join(f"{k} {hyps[k]}\n" for k in data.keys))
    atomic_write_text(out / "ref.txt", "".join(f"{k} {data.texts[k]}\n" for k in data.keys))
    cer, wer = error_rate(data.texts, hyps, "CER"), error_rate(data.texts, hyps, "WER")
    b_cer, b_wer = error_rate(data.texts, blank_hyps, "CER"), error_rate(data.texts, blank_hyps, "WER")
    atomic_write_text(out / "cer.txt", f"{cer}\n")
    atomic_write_text(out / "wer.txt", f"{wer}\n")
    atomic_write_text(out / "all_blank.txt", f"{b_cer}\n{b_wer}\n")
    skipped = ", ".join(f"{k} {v}" for k, v in data.skipped.items() if v) or "none"
    summary = (f"greedy {cer}\ngreedy {wer}\nall-blank {b_cer}\nall-blank {b_wer}\n"
               f"utterances skipped: {skipped}\n")
    atomic_write_text(out / "results.txt", summary)
    print(f"decode_ctc: {a.data}: CER {cer.rate:.2f}% WER {wer.rate:.2f}% (all blank: CER {b_cer.rate:.2f}% "
          f"WER {b_wer.rate:.2f}%) over {len(data.keys)} utterances")
    return 0


if __name__ == "__main__":
    run_main(main)
