"""Export a trained emotion system as a self-contained model dir (steps/ser/export.sh).

    python -m ser.bin.export_ser_model [options] <model> <mfcc-config> <extractor-dir> <export-dir>

``<model>`` is a stage-7 ``final.pt`` (ser.bin.train_ser), ``<mfcc-config>`` the MFCC option
file of the features it was trained on, ``<extractor-dir>`` the online i-vector extractor
(``exp/nnet3/extractor``).  Writes ``<export-dir>`` atomically (see ser.infer.export):
``model.pt``, ``labels.txt``, ``mfcc.conf``, ``ivector_extractor/``, ``model.json``.  With
``--system-dir`` the provenance includes the system's cross-validated figures
(``results.json``) and its set / protocol (``meta.json``).
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from ser.cli import run_main, setup_logging
from ser.infer.export import ExportInfo, export_model

log = logging.getLogger("export_ser_model")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--system", default=None, help="system name (default: the export dir's parent's name)")
    p.add_argument("--system-dir", default=None, help="the system's exp/ser/<system> (results.json, meta.json)")
    p.add_argument("--corpus", default="unknown", help="corpus the model was trained on, e.g. IEMOCAP (embedded)")
    p.add_argument("--set", default="unknown", help="data set (when --system-dir has no meta.json)")
    p.add_argument("--protocol", default="unknown", help="cross-validation protocol (idem)")
    p.add_argument("--description", default="")
    p.add_argument("--ivector-period", type=int, default=None,
                   help="frames per online i-vector (default: the training's, from the options.json next to "
                        "<model>; else 10); another value than the training's is an error")
    p.add_argument("model")
    p.add_argument("mfcc_config")
    p.add_argument("extractor_dir")
    p.add_argument("export_dir")
    a = p.parse_args(argv)
    setup_logging()
    out = Path(a.export_dir)
    info = ExportInfo(a.system or out.resolve().parent.name, a.corpus, a.set, a.protocol, a.description,
                      a.ivector_period)
    export_model(a.model, a.mfcc_config, a.extractor_dir, out, info, a.system_dir)
    log.info("exported %s to %s", a.model, out)
    return 0


if __name__ == "__main__":
    run_main(main)
