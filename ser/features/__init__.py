"""Feature extraction: Kaldi-compatible MFCC (batched PyTorch) and speed/volume perturbation.

* :mod:`ser.features.kaldi_conf` — Kaldi option files (``conf/*.conf``), mirrors ``src/util/parse-options.cc``;
* :mod:`ser.features.mfcc` — ``MfccOptions``, ``Mfcc``, ``compute_mfcc``, mirrors ``src/feat/feature-*.cc``;
* :mod:`ser.features.perturb` — sox ``speed``/``--vol`` signal perturbation and ``perturb_volume.py`` factor draws.
"""
